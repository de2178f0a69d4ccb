"""``ewfd ctl`` against a real ``ewfd run``: its actions change what the workers do.

The daemon runs ``ctlapp`` (steps gated by marker files); every ``ewfd ctl`` call
is a subprocess, as an operator would run it. Waits poll with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import wait_until

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
EWFD = shutil.which("ewfd", path=str(Path(sys.executable).parent)) or "ewfd"
WAIT = 20.0


def wait_for(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    return wait_until(check, timeout, what)


class CtlDaemon:
    """``ewfd run`` on a temp directory, and ``ewfd ctl`` pointed at its config."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.config = tmp_path / "ewfd.toml"
        self.log = tmp_path / "ewfd.log"
        self.config.write_text(
            '[ewfd]\napp = "ctlapp:engine"\ndatabase = "ewfd.db"\nlog_file = "ewfd.log"\n'
            'shutdown_timeout = "5s"\n\n[queues.default]\nworkers = 2\npoll_interval = "100ms"\n')
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.env.pop("EWFD_CONFIG", None)
        with (tmp_path / "daemon.out").open("wb") as out:
            self.proc = subprocess.Popen([EWFD, "run", "--config", str(self.config)],
                                         cwd=tmp_path, env=self.env, stdout=out, stderr=out,
                                         start_new_session=True)
        self.family: set[int] = {self.proc.pid}

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([EWFD, "ctl", *args, "--config", str(self.config)],
                                env=self.env, capture_output=True, text=True, timeout=30)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ctl(*args, "--json").stdout)

    def status(self, uuid: str) -> str:
        return str(self.json("show", uuid)["status"])

    def wait_status(self, uuid: str, status: str) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            wf: dict[str, Any] = self.json("show", uuid)
            return wf if wf["status"] == status else None
        return wait_for(reached, f"workflow {uuid} to be {status}")  # type: ignore[no-any-return]

    def workers(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.json("workers")
        self.family.update(r["pid"] for r in rows if r["pid"])
        return rows

    def ready(self) -> None:
        def up() -> bool:
            assert self.proc.poll() is None, (self.dir / "daemon.out").read_text()
            rows = self.workers()
            return len(rows) == 3 and all(r["alive"] for r in rows) and all(
                r["state"] == "idle" for r in rows[1:])
        wait_for(up, "the supervisor and 2 idle workers")

    def stop(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.family.update(p.pid for p in psutil.Process(self.proc.pid).children(True))
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        for pid in self.family:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def ctl_daemon(tmp_path: Path) -> Iterator[CtlDaemon]:
    daemon = CtlDaemon(tmp_path)
    try:
        daemon.ready()
        yield daemon
    finally:
        daemon.stop()


@pytest.mark.timeout(60)
def test_pause_stops_claiming_until_resume(ctl_daemon: CtlDaemon) -> None:
    assert ctl_daemon.ctl("pause", "default").stdout == "paused queue default\n"
    uuid = ctl_daemon.ctl("enqueue", "quick").stdout.strip()
    deadline = time.monotonic() + 1.5     # ten poll intervals: it would have run by now
    while time.monotonic() < deadline:
        assert ctl_daemon.status(uuid) == "pending"
        time.sleep(0.1)
    queues = {q["queue"]: q for q in ctl_daemon.json("queues")}
    assert queues["default"]["paused"] is True and queues["default"]["pending"] == 1
    assert ctl_daemon.ctl("resume", "default").stdout == "resumed queue default\n"
    wf = ctl_daemon.wait_status(uuid, "completed")
    assert wf["state"] == {"finished": True}


@pytest.mark.timeout(60)
def test_cancel_running_stops_at_next_step(ctl_daemon: CtlDaemon, tmp_path: Path) -> None:
    marker = tmp_path / "go"
    uuid = ctl_daemon.ctl("enqueue", "gate", "--state", json.dumps({"marker": str(marker)})
                          ).stdout.strip()
    wait_for(lambda: any(w["workflow_uuid"] == uuid and w["step"] == "wait_marker"
                         for w in ctl_daemon.workers()), "a worker running wait_marker")
    result = ctl_daemon.json("cancel", uuid)
    assert result.items() >= {"changed": 1, "uuid": uuid, "status": "running",
                              "cancel_requested": True}.items()
    assert ctl_daemon.status(uuid) == "running"     # the step in progress is never torn
    marker.touch()
    wf = ctl_daemon.wait_status(uuid, "cancelled")
    assert [(h["step"], h["outcome"]) for h in wf["history"]] == [("wait_marker", "completed")]
    assert wf["state"] == {"marker": str(marker), "waited": True}   # "finish" never ran
    again = ctl_daemon.ctl("cancel", uuid, check=False)     # a second cancel: no change
    assert again.returncode == 0 and "already cancelled (nothing changed)" in again.stdout


@pytest.mark.timeout(60)
def test_retry_failed_completes_once_fixed(ctl_daemon: CtlDaemon, tmp_path: Path) -> None:
    marker = tmp_path / "fixed"
    uuid = ctl_daemon.ctl("enqueue", "needs_marker", "--state",
                          json.dumps({"marker": str(marker)})).stdout.strip()
    wf = ctl_daemon.wait_status(uuid, "failed")
    assert wf["error"] == f"step need_marker: marker {marker} is missing"
    marker.touch()
    assert ctl_daemon.ctl("retry", uuid).stdout.startswith("retried 1 workflow")
    wf = ctl_daemon.wait_status(uuid, "completed")
    assert [h["outcome"] for h in wf["history"]] == ["failed", "completed", "completed"]
    assert all(psutil.pid_exists(h["worker_pid"]) for h in wf["history"])
    done = ctl_daemon.ctl("retry", uuid, check=False)
    assert done.returncode == 1 and "is completed" in done.stderr


@pytest.mark.timeout(60)
def test_workers_lists_live_pids_then_dead(ctl_daemon: CtlDaemon) -> None:
    rows = ctl_daemon.workers()
    sup, *workers = rows
    assert (sup["role"], sup["pid"], sup["alive"]) == ("supervisor", ctl_daemon.proc.pid, True)
    assert len(workers) == 2
    for w in workers:
        assert w["role"] == "worker" and w["queue"] == "default" and w["alive"] is True
        assert psutil.Process(w["pid"]).ppid() == sup["pid"]
        assert w["rss_bytes"] > 0 and w["cpu_percent"] >= 0
    text = ctl_daemon.ctl("workers").stdout
    assert str(sup["pid"]) in text and "supervisor" in text
    os.kill(ctl_daemon.proc.pid, signal.SIGKILL)     # the runtime file stays behind
    ctl_daemon.proc.wait()
    result = ctl_daemon.ctl("workers", "--json")
    assert [r["alive"] for r in json.loads(result.stdout)] == [False, False, False]
    assert "supervisor not running" in result.stderr


def read_lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


@pytest.mark.timeout(60)
def test_tail_follow_prints_new_lines_of_one_workflow(ctl_daemon: CtlDaemon) -> None:
    ctl_daemon.ctl("pause", "default")
    mine = ctl_daemon.ctl("enqueue", "quick").stdout.strip()
    other = ctl_daemon.ctl("enqueue", "quick").stdout.strip()
    # Nothing about either is logged while the queue is paused, so the tail cannot miss any.
    tail = subprocess.Popen([EWFD, "ctl", "tail", "--follow", "--workflow", mine, "--config",
                             str(ctl_daemon.config)], env=ctl_daemon.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(tail.stdout, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        ctl_daemon.ctl("resume", "default")
        deadline = time.monotonic() + WAIT
        while not any("workflow.completed" in line for line in seen):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no workflow.completed from tail; got {seen}"
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=remaining))
        ctl_daemon.wait_status(other, "completed")
        time.sleep(0.5)      # two follow polls: a line of the other workflow would be out
    finally:
        tail.kill()
        tail.wait()
        reader.join(5)
    while not lines.empty():
        seen.append(lines.get())
    events = [line.split()[5] for line in seen]     # date, time, UTC, level, pid, event
    assert events[0] == "workflow.started" and "step.completed" in events
    assert all(mine in line for line in seen) and not any(other in line for line in seen)
