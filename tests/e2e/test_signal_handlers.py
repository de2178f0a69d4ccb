"""Signal handlers whose work fails must not take the daemon down (issue 10, A2).

USR1 after the log path became unopenable, HUP while another program holds the
database's write lock: the supervisor logs the failure and carries on, and a
worker in the middle of a step lets the step finish as if nothing happened.
"""

from __future__ import annotations

import os
import signal
import sqlite3

import pytest
from conftest import Daemon, event, read_json_lines, wait_until

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(60)
def test_usr1_with_the_log_path_unopenable_keeps_logging_and_the_step(daemon: Daemon) -> None:
    daemon.configure({"app": "signalapp:engine"}, queues={"default": {"workers": 1}})
    daemon.start()
    uuid = daemon.insert_job("blocking")
    worker = daemon.wait_started(uuid)
    rotated = daemon.log_path.with_name("ewfd.log.1")
    daemon.log_path.rename(rotated)
    daemon.log_path.mkdir()   # the path a reopen needs is now a directory

    daemon.send_signal(signal.SIGUSR1)   # the supervisor, which passes it on to the worker
    os.kill(worker, signal.SIGUSR1)      # and the worker directly, mid-step

    def failures() -> set[int]:
        return {line["pid"] for line in read_json_lines(rotated)
                if line.get("event") == "log.reopen_failed"}
    wait_until(lambda: {daemon.pid, worker} <= failures(), 15, "log.reopen_failed lines")
    failed = [line for line in read_json_lines(rotated) if line["event"] == "log.reopen_failed"]
    assert all(line["path"] == str(daemon.log_path) and line["error"] for line in failed)
    assert daemon.alive()

    daemon.release(uuid)
    done = daemon.wait_for_status(uuid, "completed")
    assert done["error"] is None
    assert [h["outcome"] for h in daemon.history(uuid)] == ["completed"]
    assert not [line for line in read_json_lines(rotated) if line["event"] == "step.failed"]
    assert daemon.worker_pids() == [worker]   # nobody died

    daemon.log_path.rmdir()
    daemon.send_signal(signal.SIGUSR1)        # the path works again: a reopen succeeds
    daemon.wait_for_log(event("supervisor.log_reopened"))
    after = daemon.insert_job("blocking")
    daemon.release(after)
    daemon.wait_for_status(after, "completed")
    daemon.wait_for_log(event("workflow.completed", workflow_uuid=after))   # the worker too
    assert daemon.stop() == 0


@pytest.mark.timeout(60)
def test_hup_while_the_database_is_locked_reloads_once_it_is_free(daemon: Daemon) -> None:
    daemon.configure({"app": "signalapp:engine"}, queues={"default": {"workers": 1}})
    daemon.start()
    old = daemon.wait_for_workers(1)
    daemon.configure({"app": "signalapp:engine"}, queues={"default": {"workers": 2}})

    conn = sqlite3.connect(daemon.db, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")   # the fault: another program holds the write lock
        daemon.send_signal(signal.SIGHUP)
        failed = daemon.wait_for_log(event("supervisor.reload_failed"))
        assert "locked" in failed["error"]
        assert daemon.alive()
    finally:
        conn.execute("ROLLBACK")
        conn.close()

    daemon.wait_for_log(event("supervisor.reloaded", workers=2))
    def replaced() -> bool:   # as a reload does; the old worker may take a moment to exit
        pids = set(daemon.worker_pids())
        return len(pids) == 2 and not pids & set(old)
    wait_until(replaced, 15, "two new workers, the old one gone")
    uuid = daemon.insert_job("blocking")
    daemon.release(uuid)
    daemon.wait_for_status(uuid, "completed")
    assert daemon.stop() == 0
