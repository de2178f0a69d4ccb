"""Waiting for a result from another process: ``engine.enqueue(...).result()`` in the test
process and ``ewfd ctl enqueue --wait``, against a real ``ewfd run``.

The queue's poll interval is long (30 s) and so is every waiter's fallback poll,
so a wait that ends within a few seconds was woken by the commit that finished
the workflow: the change feed the workers use, not a sleep loop.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import opsapp
import pytest
from conftest import Daemon, wait_until

from ewfd import Engine, SQLiteStore, WorkflowFailed, WorkflowStatus
from ewfd import handle as handle_mod

pytestmark = pytest.mark.e2e

PROMPT = 5.0     # woken waits end far sooner; a missed wake-up takes >= the fallback poll
FALLBACK = 60.0  # the test process's own fallback poll (the ctl subprocess keeps 10 s)
WAIT = 30.0


@pytest.fixture
def ops(daemon: Daemon) -> Daemon:
    daemon.configure(ewfd={"app": "opsapp:engine"},
                     queues={"default": {"workers": 2, "poll_interval": "30s"}})
    return daemon.start()


@pytest.fixture
def client(ops: Daemon, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The app's engine in the test process, on the daemon's database."""
    monkeypatch.setattr(handle_mod, "FALLBACK_POLL", FALLBACK)
    engine = opsapp.register(Engine(store=SQLiteStore(ops.db)))
    try:
        yield engine
    finally:
        engine.close()


def ctl(ops: Daemon, *args: str) -> subprocess.Popen[str]:
    assert ops.config_path is not None
    return subprocess.Popen([sys.executable, "-m", "ewfd", "ctl", *args,
                             "--config", str(ops.config_path)], env=ops.env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def release_when_started(ops: Daemon, uuid: str) -> float:
    """Wait for the gated step of ``uuid`` to run, release it; the time of the release."""
    wait_until((ops.dir / f"started-{uuid}").exists, WAIT, f"the gate of {uuid} to start")
    (ops.dir / f"release-{uuid}").touch()
    return time.monotonic()


@pytest.mark.timeout(90)
def test_enqueue_through_the_api_and_wait_for_the_daemon_to_finish_it(
        ops: Daemon, client: Engine) -> None:
    t0 = time.monotonic()
    handle = client.enqueue("double", state={"n": 21})
    assert handle.result(timeout=WAIT) == {"n": 42}
    assert time.monotonic() - t0 < PROMPT

    gated = client.enqueue("gated", state={"n": 5})
    released = release_when_started(ops, gated.uuid)
    wf = gated.wait(timeout=WAIT)
    assert time.monotonic() - released < PROMPT
    assert wf.status == WorkflowStatus.COMPLETED and wf.state == {"n": 10}


@pytest.mark.timeout(90)
def test_the_api_wait_of_a_failed_workflow_raises_and_a_timeout_raises_timeout_error(
        ops: Daemon, client: Engine) -> None:
    failing = client.enqueue("boom")
    with pytest.raises(WorkflowFailed, match="step boom: card declined"):
        failing.result(timeout=WAIT)

    gated = client.enqueue("gated")
    wait_until((ops.dir / f"started-{gated.uuid}").exists, WAIT, "the gate to start")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"is still running after 0\.5s"):
        gated.wait(timeout=0.5)
    assert 0.49 <= time.monotonic() - t0 < PROMPT
    (ops.dir / f"release-{gated.uuid}").touch()
    assert gated.result(timeout=WAIT) == {"n": 2}


@pytest.mark.timeout(90)
def test_ctl_enqueue_wait_prints_the_outcome_when_the_daemon_completes_it(ops: Daemon) -> None:
    with reaped(ctl(ops, "enqueue", "gated", "--state", '{"n": 8}', "--wait")) as proc:
        assert proc.stdout is not None
        uuid = proc.stdout.readline().strip()     # printed at once, before the wait
        released = release_when_started(ops, uuid)
        out, err = proc.communicate(timeout=WAIT)
        assert time.monotonic() - released < PROMPT
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == "completed"
    assert json.loads("\n".join(lines[1:])) == {"n": 16}
    assert ops.row(uuid)["status"] == "completed"


@pytest.mark.timeout(90)
def test_ctl_enqueue_wait_json_of_a_failed_workflow_exits_1(ops: Daemon) -> None:
    with reaped(ctl(ops, "enqueue", "boom", "--wait", "--json")) as proc:
        out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 1, err
    result: dict[str, Any] = json.loads(out)
    assert result["status"] == "failed" and result["error"] == "step boom: card declined"
    assert ops.row(result["uuid"])["status"] == "failed"

    with reaped(ctl(ops, "enqueue", "boom", "--wait")) as proc:
        out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 1
    assert out.splitlines()[1] == "failed: step boom: card declined"


@pytest.mark.timeout(90)
def test_ctl_enqueue_wait_timeout_exits_124_and_the_workflow_carries_on(ops: Daemon) -> None:
    with reaped(ctl(ops, "enqueue", "gated", "--wait", "--timeout", "1s")) as proc:
        out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 124, err
    uuid = out.strip()
    assert f"workflow {uuid} is still" in err and "after 1s" in err and "carries on" in err
    release_when_started(ops, uuid)
    assert ops.wait_for_status(uuid, "completed")["status"] == "completed"


@pytest.mark.timeout(60)
def test_ctl_timeout_without_wait_is_a_usage_error(ops: Daemon) -> None:
    with reaped(ctl(ops, "enqueue", "double", "--timeout", "1s")) as proc:
        _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 2 and "--timeout applies to --wait" in err
