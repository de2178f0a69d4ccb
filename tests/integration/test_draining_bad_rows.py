"""A draining queue's sweep of rows added after the drain began, on rows an outside program
wrote with text that is not UTF-8 (the same kind as the unknown-queue and expired-lease
sweeps in test_breakers_inprocess)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ewfd.model import QueueSpec, WorkflowStatus
from ewfd.store.sqlite import SQLiteStore


def test_a_row_added_to_a_draining_queue_with_a_uuid_not_utf8_is_rejected(
        tmp_path: Path) -> None:
    """The sweep read the row inside its write and raised StoreError ("Could not decode to
    UTF-8") every second: the row stayed pending, the queue never closed, and the
    supervisor's later duties of each tick never ran."""
    store = SQLiteStore(tmp_path / "ewfd.db")
    try:
        store.save_queue(QueueSpec("q"))
        assert store.set_draining("q", True)
        conn = sqlite3.connect(tmp_path / "ewfd.db")
        try:
            conn.execute("INSERT INTO jobs (uuid, queue, workflow) VALUES "
                         "(CAST(X'71ff' AS TEXT), 'q', 'w')")
            conn.execute("INSERT INTO jobs (uuid, queue, workflow) VALUES ('good', 'q', 'w')")
            conn.commit()
        finally:
            conn.close()
        rejected = store.reject_new_on_draining()
        assert len(rejected) == 2
        assert all("queue 'q' is closing" in error for _, error in rejected)
        assert store.load_workflow("good").status == WorkflowStatus.FAILED
        assert store.close_drained("q") is True
    finally:
        store.close()
