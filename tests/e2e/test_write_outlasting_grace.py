"""A step's own store write that waits on a lock past the step's timeout and the grace.

Found by ``scripts/chaos`` (the fan-out steps of its busy-database fault): the
step's timeout is held back while the step's own write (``engine.run`` of a
child) waits for a lock another program holds (issue 10, A1), so the step
cannot react to it before the write ends; the supervisor took that for a step
that ignored its interruption and killed the worker after ``timeout_grace``,
recording the attempt as "ignored the interruption; worker killed" and losing
the write. Like the save after a step, a store write inside a step now holds
the supervisor's timeout kill back until it ends; the timeout then fires.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from conftest import Daemon
from signalapp import FANOUT_TIMEOUT

pytestmark = pytest.mark.e2e

GRACE = 1.0
HOLD = FANOUT_TIMEOUT + GRACE + 1.0   # past the timeout and the grace, within one busy wait (5 s)


@pytest.mark.timeout(90)
def test_a_write_waiting_past_timeout_and_grace_is_not_killed(daemon: Daemon) -> None:
    daemon.configure({"app": "signalapp:engine", "timeout_grace": f"{GRACE:g}s"},
                     queues={"default": {"workers": 1}})
    daemon.start()
    uuid = daemon.insert_job("fanout", queue="default")
    daemon.wait_started(uuid)
    conn = sqlite3.connect(daemon.db, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        (daemon.dir / f"release-{uuid}").touch()   # the step now writes into our lock
        time.sleep(HOLD)
        conn.execute("ROLLBACK")
    finally:
        conn.close()

    row = daemon.wait_for_status(uuid, ("failed", "completed"), timeout=30)
    assert row["status"] == "failed" and "timed out" in row["error"], row
    assert "killed" not in row["error"], row
    assert not daemon.events("worker.killed"), daemon.events("worker.killed")
    child = daemon.wait_for_status(f"{uuid}-child", "completed", timeout=30)   # the write held
    assert child["workflow"] == "child"
    assert daemon.stop() == 0
