"""Rows written badly by hand, met by the in-process Engine and Worker (issue 10, D9): the
same rules as under the daemon, tested without it."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from ewfd import Engine, QueueSpec, SQLiteStore, Step, StepContext, WorkflowStatus, WorkflowTemplate
from ewfd.errors import InvalidRow
from ewfd.worker import Worker


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(SQLiteStore(tmp_path / "ewfd.db"))

    def step(ctx: StepContext, state: dict[str, Any]) -> None:
        state[ctx.step_name] = True

    for name in ("a", "b"):
        eng.register(name, step)
    eng.register_template("two", WorkflowTemplate(steps=[Step("a"), Step("b")]))
    eng.create_queue("q")
    yield eng
    eng.close()


def insert(engine: Engine, sql: str, *params: Any) -> str:
    store = engine.store
    assert isinstance(store, SQLiteStore)
    with contextlib.closing(sqlite3.connect(store.path, isolation_level=None)) as conn:
        cur = conn.execute(sql, params)
        found = conn.execute("SELECT uuid FROM jobs WHERE id=?", (cur.lastrowid,)).fetchone()
        return str(found[0]) if found else ""


def test_current_step_at_the_end_fails_instead_of_completing_unsaved(engine: Engine) -> None:
    uuid = insert(engine, "INSERT INTO jobs (queue, workflow, current_step) VALUES ('q', 'two', 2)")
    with structlog.testing.capture_logs() as logs:
        Worker(engine, engine.store, QueueSpec("q")).drain()
    wf = engine.store.load_workflow(uuid)
    assert wf.status == WorkflowStatus.FAILED and "current_step 2" in (wf.error or "")
    assert not [line for line in logs if line["event"] == "workflow.completed"]


def test_the_worker_waits_past_a_not_before_that_is_not_a_number(engine: Engine) -> None:
    insert(engine, "INSERT INTO jobs (queue, workflow, not_before) VALUES ('q', 'two', 'soon')")
    worker = Worker(engine, engine.store, QueueSpec("q"))
    assert worker.drain() == []          # never claimed (the daemon's sweep fails it) ...
    assert worker._wait_time(refused=False) >= 0      # ... and nothing crashes on it
    store = engine.store
    assert isinstance(store, SQLiteStore)
    rejected = store.reject_unknown_queues()
    assert len(rejected) == 1 and "not_before 'soon'" in rejected[0][1]


def test_resume_takes_back_running_rows_with_unusable_lease_fields(engine: Engine) -> None:
    uuids = [insert(engine, "INSERT INTO jobs (queue, workflow, status, lease_owner, "
                    "lease_expires, steps) VALUES (NULL, 'two', 'running', ?, ?, ?)",
                    owner, expires, WorkflowTemplate(steps=[Step("a"), Step("b")]).steps_json())
             for owner, expires in ((b"\xff", 1e12), (None, None), ("h:1:1", "later"))]
    for future in engine.resume_workflows():
        future.result(timeout=30)
    for uuid in uuids:
        assert engine.store.load_workflow(uuid).status == WorkflowStatus.COMPLETED


def test_queues_with_unusable_settings_are_refused_at_every_door(engine: Engine) -> None:
    for bad in ({"workers": 2.5}, {"workers": "2"}, {"workers": 65}, {"lease": float("nan")},
                {"poll_interval": 0}, {"max_memory": -1}, {"max_crashes": True}):
        with pytest.raises(ValueError):
            engine.create_queue("x", **bad)
    insert(engine, "INSERT INTO queues (name, workers) VALUES ('hand', 'two')")
    with pytest.raises(InvalidRow, match="workers 'two'"):
        engine.store.load_queue("hand")
    assert [q.name for q in engine.store.load_queues()] == ["q"]
