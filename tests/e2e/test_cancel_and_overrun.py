"""Under the daemon: a cancel is honoured at every hand-back (E12), and an ``async def`` step
that blocks past its timeout is a failed attempt, never a completed one (E13)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Daemon, event, wait_until

pytestmark = pytest.mark.e2e

EWFD = shutil.which("ewfd", path=str(Path(sys.executable).parent)) or "ewfd"
QUEUES = {"default": {"workers": 2, "poll_interval": "100ms"}}


def ctl(daemon: Daemon, *args: str) -> str:
    """``ewfd ctl`` as an operator runs it."""
    done = subprocess.run([EWFD, "ctl", *args, "--db", str(daemon.db)], capture_output=True,
                          text=True, timeout=30, env=daemon.env())
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def started(daemon: Daemon) -> Daemon:
    # A long grace: the supervisor's kill must not be what fails the overrunning step.
    daemon.configure({"app": "timeapp:engine", "timeout_grace": "10s"}, QUEUES)
    return daemon.start()


@pytest.mark.timeout(60)
def test_cancel_during_an_attempt_that_fails_into_a_30s_wait(started: Daemon) -> None:
    daemon = started
    uuid = daemon.insert_job("late_failure")
    daemon.wait_started(uuid)
    ctl(daemon, "cancel", uuid)
    assert daemon.row(uuid)["status"] == "running"     # it stops at its next boundary
    daemon.release(uuid)
    began = time.monotonic()
    row = daemon.wait_for_status(uuid, ("cancelled", "failed", "completed"), timeout=20)
    assert (row["status"], row["error"]) == ("cancelled", "cancelled")
    assert time.monotonic() - began < 20      # far from the 30 s backoff
    daemon.wait_for_log(event("workflow.cancelled", workflow_uuid=uuid))
    assert [h["outcome"] for h in daemon.history(uuid)] == ["failed"]
    assert daemon.step_counts(uuid) == {"gate": 1}


@pytest.mark.timeout(60)
def test_cancel_of_a_workflow_pending_in_a_retry_wait(started: Daemon) -> None:
    daemon = started
    uuid = daemon.insert_job("late_failure")
    daemon.wait_started(uuid)
    daemon.release(uuid)
    daemon.wait_for_log(event("step.retrying", workflow_uuid=uuid))
    daemon.wait_for_status(uuid, "pending")
    ctl(daemon, "cancel", uuid)
    assert daemon.row(uuid)["status"] == "cancelled"
    assert daemon.step_counts(uuid) == {"gate": 1}


@pytest.mark.timeout(60)
def test_an_async_step_blocking_past_its_timeout_fails(started: Daemon) -> None:
    daemon = started
    uuid = daemon.insert_job("async_block")
    row = daemon.wait_for_status(uuid, ("failed", "completed"), timeout=30)
    assert row["status"] == "failed"
    assert "timed out after 1s" in row["error"]
    assert "killed" not in row["error"]
    assert not daemon.events("worker.killed")
    history = daemon.history(uuid)
    assert [h["outcome"] for h in history] == ["failed"]
    wait_until(lambda: daemon.events("workflow.failed", workflow_uuid=uuid), 10,
               "workflow.failed")
    assert not daemon.events("step.completed", workflow_uuid=uuid)
