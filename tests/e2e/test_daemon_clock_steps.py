"""The wall clock stepped under a running daemon (issue 10, E10).

Every process of the daemon runs with ``clockshift.c`` preloaded: a test steps their
wall clock (``time.time()``, ``datetime.now()``, SQLite's ``now``) by an hour at once,
while the monotonic and boot clocks go on, as after a real ``date -s`` or an NTP step.
The machine's own clock is not touched (other programs share it). Needs a C compiler;
skipped without one.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Daemon, event

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
QUEUES = {"default": {"workers": 2, "poll_interval": "100ms", "lease": "30s"}}


@pytest.fixture(scope="module")
def clockshift(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the clock-step preload")
    lib = tmp_path_factory.mktemp("clockshift") / "clockshift.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(lib),
                    str(HERE / "clockshift.c"), "-ldl"], check=True, timeout=60)
    return lib


class Clock:
    """The offset file every preloaded process maps."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.set(0)

    def set(self, seconds: float) -> None:
        with open(self.path, "wb" if not self.path.exists() else "r+b") as f:
            f.write(struct.pack("<q", int(seconds * 1e9)))

    def env(self, lib: Path) -> dict[str, str]:
        return {"LD_PRELOAD": str(lib), "CLOCKSHIFT_FILE": str(self.path)}


@pytest.fixture
def stepped(daemon: Daemon, clockshift: Path, tmp_path: Path) -> tuple[Daemon, Clock]:
    clock = Clock(tmp_path / "clock-offset")
    daemon.extra_env.update(clock.env(clockshift))
    daemon.configure({"app": "timeapp:engine"}, QUEUES)
    daemon.start()
    return daemon, clock


def daemon_time(daemon: Daemon) -> float:
    """The wall clock as the daemon's processes read it (a preloaded python)."""
    done = subprocess.run([sys.executable, "-c", "import time; print(time.time())"],
                          env=daemon.env(), capture_output=True, text=True, check=True,
                          timeout=30)
    return float(done.stdout)


@pytest.mark.timeout(90)
def test_a_4s_retry_wait_is_not_stretched_by_a_step_back_of_an_hour(
        stepped: tuple[Daemon, Clock]) -> None:
    daemon, clock = stepped
    uuid = daemon.insert_job("retry4")
    daemon.wait_for_log(event("step.retrying", workflow_uuid=uuid))
    daemon.wait_for_status(uuid, "pending")          # handed back: 4 s > poll_interval
    clock.set(-3600)
    assert daemon_time(daemon) < time.time() - 3500   # the step took
    began = time.monotonic()
    row = daemon.wait_for_status(uuid, "completed", timeout=40)
    assert time.monotonic() - began < 40
    assert row["error"] is None
    assert [h["outcome"] for h in daemon.history(uuid)] == ["failed", "completed"]


@pytest.mark.timeout(90)
def test_a_4s_retry_wait_is_not_cut_short_by_a_step_forward(
        stepped: tuple[Daemon, Clock]) -> None:
    daemon, clock = stepped
    uuid = daemon.insert_job("retry4")
    daemon.wait_for_log(event("step.retrying", workflow_uuid=uuid))
    daemon.wait_for_status(uuid, "pending")
    handed_back = time.monotonic()
    clock.set(3600)
    daemon.wait_for_status(uuid, "completed", timeout=40)
    assert time.monotonic() - handed_back > 2.0      # not at once: the wait still holds


@pytest.mark.timeout(90)
def test_a_step_forward_does_not_let_another_program_take_a_running_step(
        stepped: tuple[Daemon, Clock]) -> None:
    """A program embedding ewfd on the same database sweeps expired leases when it calls
    ``resume_workflows()``: a clock step must not make the daemon's live leases expired."""
    daemon, clock = stepped
    uuid = daemon.insert_job("hold_lease")
    daemon.wait_started(uuid)
    token = daemon.row(uuid)["token"]
    clock.set(3600)
    rival = ("from ewfd import Engine, SQLiteStore; "
             f"engine = Engine(store=SQLiteStore({str(daemon.db)!r})); "
             "engine.resume_workflows(); engine.close()")
    subprocess.run([sys.executable, "-c", rival], env=daemon.env(), check=True, timeout=30)
    row = daemon.row(uuid)
    assert (row["status"], row["token"]) == ("running", token)
    daemon.release(uuid)
    daemon.wait_for_status(uuid, "completed")
    assert daemon.step_counts(uuid) == {"hold": 1}
    assert [h["outcome"] for h in daemon.history(uuid)] == ["completed"]
