"""The database file deleted or replaced under a store that has it open (issue 10, D7), in
process: the store refuses to write, the in-process Worker stops, nothing is created."""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import structlog

from ewfd import Engine, QueueSpec, SQLiteStore, Step, StepContext, WorkflowTemplate
from ewfd.errors import DatabaseLost, StoreError
from ewfd.model import Workflow
from ewfd.worker import Worker


def add(store: SQLiteStore) -> None:
    wf = Workflow(uuid=str(uuid.uuid4()), name="greet", steps=[Step("a")], queue="q")
    store.create_workflow(wf, "{}")


def replace_with_copy(db: Path) -> None:
    copy = db.with_name("copy.db")
    with sqlite3.connect(db) as conn:
        conn.execute("VACUUM INTO ?", (str(copy),))
    conn.close()
    os.replace(copy, db)


def test_a_write_after_the_file_was_deleted_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "ewfd.db"
    store = SQLiteStore(db)
    add(store)
    os.unlink(db)
    with pytest.raises(DatabaseLost, match="was deleted"):
        add(store)
    store.close()
    assert not db.exists()


def test_a_write_after_the_file_was_replaced_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "ewfd.db"
    store = SQLiteStore(db)
    add(store)
    replace_with_copy(db)
    with pytest.raises(DatabaseLost, match="replaced by another file"):
        add(store)
    store.close()


def test_expect_opens_only_that_file_and_never_creates_one(tmp_path: Path) -> None:
    db = tmp_path / "ewfd.db"
    first = SQLiteStore(db)
    opened = first.file_id
    assert opened is not None
    again = SQLiteStore(db, create=False, expect=opened)   # the same file: fine
    again.close()
    replace_with_copy(db)
    with pytest.raises(DatabaseLost, match="replaced"):
        SQLiteStore(db, create=False, expect=opened)
    os.unlink(db)
    with pytest.raises(DatabaseLost, match="deleted"):
        SQLiteStore(db, create=False, expect=opened)
    with pytest.raises(StoreError, match="no database"):
        SQLiteStore(db, create=False)
    assert not db.exists()
    first.close()


@pytest.mark.timeout(60)
def test_the_in_process_worker_stops_with_database_lost(tmp_path: Path) -> None:
    db = tmp_path / "ewfd.db"
    store = SQLiteStore(db)
    engine = Engine(store)
    engine.register("a", lambda ctx, state: None)
    engine.register_template("greet", WorkflowTemplate(steps=[Step("a")]))
    worker = Worker(engine, store, QueueSpec("q", poll_interval=0.05))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            failure.append(exc)

    with structlog.testing.capture_logs() as logs:
        thread = threading.Thread(target=run)
        thread.start()
        os.unlink(db)
        thread.join(10)
        stuck = thread.is_alive()
        worker.stop.set()
        thread.join(10)
    assert not stuck, "the worker went on against a deleted database"
    assert failure and isinstance(failure[0], DatabaseLost)
    assert any(line["event"] == "database.lost" for line in logs)
    engine.close()


def test_a_step_whose_save_finds_the_file_gone_is_not_retried_forever(tmp_path: Path) -> None:
    db = tmp_path / "ewfd.db"
    engine = Engine(SQLiteStore(db))

    def vanish(ctx: StepContext, state: dict[str, Any]) -> None:
        os.unlink(db)

    engine.register("vanish", vanish)
    engine.register_template("w", WorkflowTemplate(steps=[Step("vanish")]))
    with pytest.raises(DatabaseLost):
        engine.run(engine.new_workflow("w"))
    engine.close()
