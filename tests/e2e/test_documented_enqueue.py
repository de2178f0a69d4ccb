"""What the README documents about enqueueing holds against a running daemon: a row with
``not_before`` waits until then, a second insert of your own uuid is ignored, and
``ewfd.control.enqueue`` starts a workflow by name without the app's code."""

from __future__ import annotations

import contextlib
import sqlite3
import time

import pytest
from conftest import Daemon

from ewfd import SQLiteStore, control
from ewfd.model import parse_iso

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(60)
def test_not_before_delays_a_row_inserted_by_sql(daemon: Daemon) -> None:
    daemon.start()
    with contextlib.closing(daemon.connect()) as conn, conn:
        rowid = conn.execute("INSERT INTO jobs (workflow, state, not_before) VALUES "
                             "('three', '{}', unixepoch() + 2)").lastrowid
        inserted = time.time()
        uuid = conn.execute("SELECT uuid FROM jobs WHERE id = ?", (rowid,)).fetchone()[0]
    row = daemon.wait_for_status(uuid, "completed")
    started = min(parse_iso(h["started_at"]).timestamp() for h in daemon.history(uuid))
    assert started >= inserted + 1, (started, inserted)         # due 2 s after the insert
    assert row["error"] is None


@pytest.mark.timeout(60)
def test_your_own_uuid_dedupes_inserts(daemon: Daemon) -> None:
    daemon.start()
    sql = ("INSERT OR IGNORE INTO jobs (uuid, workflow, state) VALUES "
           "('order-1001', 'three', '{}')")
    with contextlib.closing(daemon.connect()) as conn:
        for _ in range(3):
            with conn:
                conn.execute(sql)
        with pytest.raises(sqlite3.IntegrityError), conn:
            conn.execute(sql.replace(" OR IGNORE", ""))
    daemon.wait_for_status("order-1001", "completed")
    assert daemon.step_counts("order-1001") == {"one": 1, "two": 1, "three": 1}


@pytest.mark.timeout(60)
def test_control_enqueue_starts_a_workflow_by_name(daemon: Daemon) -> None:
    daemon.start()
    store = SQLiteStore(daemon.db, create=False)
    try:
        uuid = control.enqueue(store, "three", queue="default", state={"n": 1})
    finally:
        store.close()
    assert daemon.wait_for_status(uuid, "completed")["current_step"] == 3
