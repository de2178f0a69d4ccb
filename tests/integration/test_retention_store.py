"""Pruning as retention runs it: batches, history included, and an index behind every batch
(the write lock is held for the rows deleted, never for a scan of every finished row)."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ewfd.model import Attempt, Step, Workflow, WorkflowStatus, utcnow
from ewfd.store.sqlite import SQLiteStore

S = WorkflowStatus


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "ewfd.db")
    try:
        yield s
    finally:
        s.close()


def finished(store: SQLiteStore, status: WorkflowStatus) -> str:
    wf = Workflow(uuid=str(uuid.uuid4()), name="greet", steps=[Step("a")], queue="q")
    store.create_workflow(wf, json.dumps({}))
    claimed = store.claim("q", "host:1:1", 30.0)
    assert claimed is not None
    now = utcnow()
    store.release(claimed.lease, status=status,
                  attempt=Attempt("a", 0, 1, now, now, 1.0, "failed", "x", 1))
    return wf.uuid


def plans(store: SQLiteStore, db: Path, action: str) -> list[str]:
    """The query plans of the SELECTs a prune (or count) runs."""
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    try:
        if action == "prune":
            list(store.prune(older_than=time.time() + 60, statuses=[S.COMPLETED, S.FAILED]))
        else:
            store.count_prunable(older_than=time.time() + 60, statuses=[S.CANCELLED])
    finally:
        store._conn.set_trace_callback(None)
    raw = sqlite3.connect(db)
    try:
        return [" ".join(str(r[-1]) for r in raw.execute(f"EXPLAIN QUERY PLAN {sql}"))
                for sql in statements if sql.lstrip().upper().startswith("SELECT")]
    finally:
        raw.close()


@pytest.mark.parametrize("action", ["prune", "count"])
def test_prune_and_count_seek_finished_rows_by_status_and_age(
        store: SQLiteStore, tmp_path: Path, action: str) -> None:
    for status in (S.COMPLETED, S.FAILED, S.CANCELLED):
        finished(store, status)
    found = plans(store, tmp_path / "ewfd.db", action)
    assert found and all("INDEX jobs_finished (status=? AND updated_at<?)" in p
                         for p in found), found


def test_prune_deletes_history_with_its_workflows_and_keeps_the_rest(store: SQLiteStore) -> None:
    done = [finished(store, S.COMPLETED) for _ in range(5)]
    failed = finished(store, S.FAILED)
    batches = list(store.prune(older_than=time.time() + 60, statuses=[S.COMPLETED], batch=2))
    assert batches == [2, 2, 1]
    assert [w.uuid for w in store.list_workflows()] == [failed]
    assert len(store.history(failed)) == 1
    count = store._conn.execute("SELECT count(*) FROM history").fetchone()[0]
    assert count == 1 and all(u not in {w.uuid for w in store.list_workflows()} for u in done)
