"""A step's timeout that fires during the step's own store write (issue 10, A1).

A step fans out a child with ``engine.run`` while another connection holds the
write lock past the step's timeout: SIGALRM arrives while ``BEGIN IMMEDIATE``
waits, and its ``StepTimeout`` used to surface just after BEGIN returned, with
the transaction open: the worker then looped on "cannot start a transaction
within a transaction" and every other writer found the database locked.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from conftest import Daemon
from signalapp import FANOUT_TIMEOUT

pytestmark = pytest.mark.e2e

HOLD = FANOUT_TIMEOUT + 1.5   # past the step's timeout, well within the worker's busy wait (5 s)


def hold_write_lock(daemon: Daemon, seconds: float, then: str) -> None:
    """Take the database's write lock, create the file ``then`` (a step waits for it), and
    keep the lock for ``seconds``: the fault is the held lock, not a synchronisation."""
    conn = sqlite3.connect(daemon.db, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        (daemon.dir / then).touch()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def outside_write(daemon: Daemon) -> None:
    """An INSERT by another program must get the lock within a few seconds."""
    conn = sqlite3.connect(daemon.db, timeout=8, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    finally:
        conn.close()


@pytest.mark.timeout(90)
def test_a_timeout_during_the_steps_own_write_fires_after_it_and_wedges_nothing(
        daemon: Daemon) -> None:
    daemon.configure({"app": "signalapp:engine", "timeout_grace": "10s"},
                     queues={"default": {"workers": 2}})
    daemon.start()
    uuid = daemon.insert_job("fanout", queue="default")
    daemon.wait_started(uuid)
    hold_write_lock(daemon, HOLD, then=f"release-{uuid}")

    row = daemon.wait_for_status(uuid, ("failed", "completed"), timeout=30)
    assert row["status"] == "failed" and "timed out" in row["error"], row
    # The write the alarm fell into was completed, then the timeout fired.
    child = daemon.wait_for_status(f"{uuid}-child", "completed", timeout=30)
    assert child["workflow"] == "child"
    outside_write(daemon)
    assert not [line for line in daemon.logs() if "within a transaction" in
                str(line.get("error"))]

    after = daemon.insert_job("child", queue="default")   # every worker still writes
    daemon.wait_for_status(after, "completed", timeout=30)
    assert daemon.stop() == 0
