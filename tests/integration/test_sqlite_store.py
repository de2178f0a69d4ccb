"""SQLiteStore beyond the shared contract: the file, the schema, other processes and writers."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ewfd.errors import SchemaTooNew, StoreError
from ewfd.model import Step, Workflow, WorkflowStatus
from ewfd.store import schema
from ewfd.store.sqlite import SQLiteStore

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ewfd.db"


@pytest.fixture
def store(db: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(db)
    try:
        yield s
    finally:
        s.close()


def raw(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=10)


def add(store: SQLiteStore) -> Workflow:
    wf = Workflow(uuid=str(uuid.uuid4()), name="greet", steps=[Step("a"), Step("b")],
                  queue="q")
    store.create_workflow(wf, "{}")
    return wf


def test_file_mode_is_0640_or_tighter(db: Path) -> None:
    old = os.umask(0)               # the store must not rely on the umask
    try:
        SQLiteStore(db).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(db).st_mode) & ~0o640 == 0


def test_wal_mode_and_schema_version(store: SQLiteStore, db: Path) -> None:
    conn = raw(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION
    finally:
        conn.close()


def test_reopening_keeps_data(db: Path) -> None:
    s = SQLiteStore(db)
    wf = add(s)
    s.close()
    s = SQLiteStore(db)
    try:
        assert s.load_workflow(wf.uuid).steps == [Step("a"), Step("b")]
    finally:
        s.close()


def test_newer_schema_is_refused(db: Path) -> None:
    SQLiteStore(db).close()
    conn = raw(db)
    conn.execute(f"PRAGMA user_version={schema.VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew):
        SQLiteStore(db)


def test_file_that_is_not_sqlite(db: Path) -> None:
    db.write_bytes(b"this is not a database, just some text\n" * 200)
    with pytest.raises(StoreError):
        SQLiteStore(db)


def test_in_memory_database() -> None:
    s = SQLiteStore(":memory:")
    try:
        wf = add(s)
        assert s.load_workflow(wf.uuid).status == WorkflowStatus.PENDING
    finally:
        s.close()


def test_raw_insert_into_jobs(store: SQLiteStore, db: Path) -> None:
    conn = raw(db)
    try:
        rowid = conn.execute("INSERT INTO jobs (queue, workflow, state) VALUES "
                             "('default','greet','{\"name\":\"x\"}')").lastrowid
        row = conn.execute("SELECT uuid, status, current_step, error, created_at, updated_at "
                           "FROM jobs WHERE id = ?", (rowid,)).fetchone()
    finally:
        conn.close()
    job_uuid, status, current_step, error, created_at, updated_at = row
    assert UUID4.match(job_uuid)
    assert (status, current_step, error) == ("pending", 0, None)
    assert ISO.match(created_at) and ISO.match(updated_at)
    wf = store.load_workflow(job_uuid)
    assert wf.name == "greet" and wf.queue == "default" and wf.state == {"name": "x"}
    c = store.claim("default", "host:1:1", 60)
    assert c is not None and c.workflow.uuid == job_uuid
    assert c.steps_known is False and c.state_json == '{"name":"x"}'


def test_use_from_a_forked_child_is_refused(store: SQLiteStore) -> None:
    wf = add(store)
    pid = os.fork()
    if pid == 0:                    # the child never returns into pytest
        code = 3
        try:
            store.load_workflow(wf.uuid)
            code = 1
        except StoreError:
            code = 0
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert store.load_workflow(wf.uuid).uuid == wf.uuid     # the parent's connection is fine


@pytest.mark.parametrize("busy_timeout", [5.0, 0.05])
def test_write_waits_for_a_writer_holding_the_lock(db: Path, busy_timeout: float) -> None:
    store = SQLiteStore(db, busy_timeout=busy_timeout)
    holder = raw(db)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO jobs (queue, workflow) VALUES ('q', 'held')")
        timer = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
        t0 = time.monotonic()
        timer.start()
        try:
            wf = add(store)             # must not raise "database is locked"
            elapsed = time.monotonic() - t0
        finally:
            timer.join()
        assert elapsed >= 0.25
        assert [w.name for w in store.list_workflows()] == ["greet", "held"]
        assert store.load_workflow(wf.uuid).status == WorkflowStatus.PENDING
    finally:
        holder.close()
        store.close()


def _wakes_on(store: SQLiteStore, write: Callable[[], None]) -> tuple[float, int]:
    store.wait_for_change(0)
    timer = threading.Timer(0.1, write)
    t0 = time.monotonic()
    timer.start()
    try:
        store.wait_for_change(10.0)
        elapsed = time.monotonic() - t0
        visible = len(store.list_workflows())
    finally:
        timer.join()
    return elapsed, visible


def test_wait_for_change_wakes_on_a_plain_sqlite_insert(store: SQLiteStore, db: Path) -> None:
    def write() -> None:
        conn = raw(db)
        try:
            conn.execute("INSERT INTO jobs (queue, workflow) VALUES ('default', 'greet')")
        finally:
            conn.close()

    elapsed, visible = _wakes_on(store, write)
    assert 0.09 <= elapsed < 2 and visible == 1


def test_wait_for_change_wakes_on_another_store_in_a_thread(store: SQLiteStore, db: Path) -> None:
    def write() -> None:
        other = SQLiteStore(db)
        try:
            add(other)
        finally:
            other.close()

    elapsed, visible = _wakes_on(store, write)
    assert 0.09 <= elapsed < 2 and visible == 1
