"""Store writes against exceptions raised by signal handlers (issue 10, A1), in process.

A signal's Python handler runs in the main thread between two bytecodes; what it
raises (StepTimeout from the step timeout's SIGALRM, KeyboardInterrupt, a host
program's SystemExit on SIGTERM) must never surface inside a store write: not
just after ``BEGIN IMMEDIATE`` (the transaction would stay open and hold the
write lock), not between two changes of one write. The write completes, then
the exception surfaces. Real signals throughout (``signal.raise_signal`` at an
exact point, or ``SIGALRM`` from the step timeout while another connection
holds the lock).
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from ewfd import (
    Engine,
    MemoryStore,
    QueueSpec,
    SQLiteStore,
    Step,
    StepContext,
    StepTimeout,
    Workflow,
    WorkflowStatus,
    WorkflowTemplate,
    timeouts,
)
from ewfd.store import memory, sqlite
from ewfd.store.base import Store
from ewfd.worker import Worker

WAIT = 10.0


def new_wf(uuid: str = "wf-1", queue: str | None = "q") -> Workflow:
    return Workflow(uuid=uuid, name="greet", queue=queue, steps=[Step("a")])


class SignalAfter:
    """A connection that raises a real signal just after one statement returns, the way
    an alarm that fired while SQLite waited on the lock is handled once it returns."""

    def __init__(self, conn: sqlite3.Connection, sql: str, signum: int) -> None:
        self._conn, self._sql, self._signum = conn, sql, signum
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        cursor = self._conn.execute(sql, *args)
        if sql == self._sql and not self.fired:
            self.fired = True
            signal.raise_signal(self._signum)
        return cursor


def _raise_system_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"host handler of signal {signum}")


# Each case: the signal, the handler to install (None: ewfd's own, the step timeout's
# SIGALRM, installed by timeouts.call around the write), and what surfaces.
CASES = {
    "sigint-keyboardinterrupt": (signal.SIGINT, signal.default_int_handler, KeyboardInterrupt),
    "sigterm-host-systemexit": (signal.SIGTERM, _raise_system_exit, SystemExit),
    "sigalrm-step-timeout": (signal.SIGALRM, None, StepTimeout),
}


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "ewfd.db")
    yield store
    store.close()


@pytest.fixture
def handlers() -> Iterator[None]:
    """Put back SIGINT, SIGTERM and SIGALRM as they were."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def call_as(case: str, write: Callable[[], Any]) -> None:
    """Run ``write`` the way the case says: plainly, or as a step under a 60 s timeout."""
    signum, handler, _ = CASES[case]
    if handler is not None:
        signal.signal(signum, handler)
    if signum == signal.SIGALRM:
        timeouts.call(write, (), 60.0)
    else:
        write()


def lock_is_free(path: Path) -> bool:
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("sql", ["BEGIN IMMEDIATE", "COMMIT"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_signal_just_after_a_statement_surfaces_after_the_whole_write(
        sqlite_store: SQLiteStore, handlers: None, case: str, sql: str) -> None:
    conn = SignalAfter(sqlite_store._conn, sql, CASES[case][0])
    sqlite_store._conn = conn  # type: ignore[assignment]
    with pytest.raises(CASES[case][2]):
        call_as(case, lambda: sqlite_store.create_workflow(new_wf(), "{}"))
    assert conn.fired
    assert not conn.in_transaction
    assert lock_is_free(Path(sqlite_store.path))
    assert sqlite_store.load_workflow("wf-1").status == WorkflowStatus.PENDING
    sqlite_store.create_workflow(new_wf("wf-2"), "{}")   # the connection still writes


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else \
        SQLiteStore(tmp_path / "ewfd.db")
    yield made
    made.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_signal_in_the_middle_of_a_write_surfaces_after_all_of_it(
        store: Store, handlers: None, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """interrupt() of two leases is one write: a signal during the first row's change
    must not leave the second one undone."""
    for uuid in ("wf-1", "wf-2"):
        store.create_workflow(new_wf(uuid), "{}")
        assert store.claim("q", "host:1:1", 60.0) is not None
    signum = CASES[case][0]
    fired: list[int] = []

    def signal_once() -> None:
        if not fired:
            fired.append(signum)
            signal.raise_signal(signum)

    # a helper each store calls once per row, inside the write
    if isinstance(store, MemoryStore):
        stored = memory._stored
        monkeypatch.setattr(memory, "_stored", lambda a: (signal_once(), stored(a))[1])
    else:
        owner_pid = sqlite._owner_pid
        monkeypatch.setattr(sqlite, "_owner_pid", lambda o: (signal_once(), owner_pid(o))[1])
    with pytest.raises(CASES[case][2]):
        call_as(case, lambda: store.interrupt(owner="host:1:1", reason="test"))
    assert fired
    assert [store.load_workflow(u).status for u in ("wf-1", "wf-2")] == \
        [WorkflowStatus.PENDING] * 2
    assert [len(store.history(u)) for u in ("wf-1", "wf-2")] == [1, 1]


# -- the step's own write under a held lock, in the in-process Worker -------------------------
@pytest.mark.timeout(60)
def test_a_step_timeout_during_the_steps_fanout_under_a_held_lock(tmp_path: Path) -> None:
    """The issue's reproduction, in process: the in-process Worker in the main thread runs
    a step (timeout 1 s) that enqueues a child while another connection holds the write
    lock for 2.5 s. The alarm fires while BEGIN IMMEDIATE waits; the child is written,
    then the step times out, and nothing is left locked."""
    path = tmp_path / "ewfd.db"
    engine = Engine(SQLiteStore(path))
    want_lock, lock_held = threading.Event(), threading.Event()

    def spawn(ctx: StepContext, state: dict[str, Any]) -> None:
        want_lock.set()
        assert lock_held.wait(WAIT)
        engine.run(engine.new_workflow("child", queue="q", uuid="the-child"))

    def holder() -> None:
        assert want_lock.wait(WAIT)
        conn = sqlite3.connect(path, timeout=WAIT, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            lock_held.set()
            time.sleep(2.5)   # the fault: a writer that keeps the lock past the timeout
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    engine.register("spawn", spawn)
    engine.register("noop", lambda ctx, state: None)
    engine.register_template("fanout", WorkflowTemplate(steps=[Step("spawn", timeout=1.0)]))
    engine.register_template("child", WorkflowTemplate(steps=[Step("noop")]))
    engine.create_queue("q")
    parent = engine.run(engine.new_workflow("fanout", queue="q"))
    thread = threading.Thread(target=holder)
    thread.start()
    try:
        worker = Worker(engine, engine.store, QueueSpec("q"))
        outcomes = worker.drain(limit=1)
    finally:
        thread.join()
    assert [o.workflow.status for o in outcomes] == [WorkflowStatus.FAILED]
    assert isinstance(outcomes[0].error, StepTimeout)
    assert engine.store.load_workflow(parent.uuid).status == WorkflowStatus.FAILED
    assert engine.store.load_workflow("the-child").status == WorkflowStatus.PENDING
    assert lock_is_free(path)
    assert [o.workflow.status for o in worker.drain()] == [WorkflowStatus.COMPLETED]
    engine.close()
