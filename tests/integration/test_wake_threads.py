"""``wait_for_change`` with several threads of one process on one store.

A client that waits for a result (``WorkflowHandle.wait``), an in-process
``Worker`` and the code that enqueues often share one store object: every
waiting thread must wake on every change, including a commit made by another
thread through the same connection (SQLite's ``data_version`` does not move for
those). Each wait here is bounded far above the expected wake-up time, and the
fallback poll is far above that bound, so only a real wake-up passes.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ewfd import Engine, Step, WorkflowStatus, WorkflowTemplate
from ewfd.model import Workflow
from ewfd.store.base import Store
from ewfd.store.memory import MemoryStore
from ewfd.store.sqlite import SQLiteStore
from ewfd.worker import Worker

LONG = 30.0      # a wait that ends this late was not woken
PROMPT = 3.0     # a woken wait ends well within this, even on a loaded machine


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "ewfd.db")
    try:
        yield s
    finally:
        s.close()


def add(store: Store) -> None:
    wf = Workflow(uuid=str(uuid.uuid4()), name="greet", steps=[Step("a")], queue="q")
    store.create_workflow(wf, json.dumps({}))


def waiters(store: Store, count: int) -> tuple[list[threading.Thread], list[float],
                                                threading.Barrier]:
    """``count`` threads that each wait once (up to LONG) and record how long it took."""
    took: list[float] = []
    ready = threading.Barrier(count + 1)

    def wait() -> None:
        store.wait_for_change(0)     # from here on, anything written is news
        ready.wait()
        t0 = time.monotonic()
        store.wait_for_change(LONG)
        took.append(time.monotonic() - t0)

    threads = [threading.Thread(target=wait) for _ in range(count)]
    for t in threads:
        t.start()
    return threads, took, ready


@pytest.mark.timeout(60)
def test_a_commit_by_another_thread_through_the_same_store_wakes_a_waiter(store: Store) -> None:
    threads, took, ready = waiters(store, 1)
    ready.wait()
    add(store)         # the same store object, so the same SQLite connection
    for t in threads:
        t.join(LONG + 5)
    assert len(took) == 1 and took[0] < PROMPT, took


@pytest.mark.timeout(60)
def test_every_waiting_thread_wakes_on_a_write_from_another_connection(
        store: Store, tmp_path: Path) -> None:
    threads, took, ready = waiters(store, 3)
    ready.wait()
    if isinstance(store, SQLiteStore):
        other = SQLiteStore(tmp_path / "ewfd.db")
        try:
            add(other)
        finally:
            other.close()
    else:
        add(store)
    for t in threads:
        t.join(LONG + 5)
    assert len(took) == 3 and max(took) < PROMPT, took


@pytest.mark.timeout(60)
def test_an_in_process_worker_takes_work_enqueued_through_its_own_store_at_once(
        tmp_path: Path) -> None:
    engine = Engine(store=SQLiteStore(tmp_path / "ewfd.db"))
    engine.register("a", lambda ctx, state: state.update(done=True))
    engine.register_template("greet", WorkflowTemplate(steps=[Step("a")]))
    spec = engine.create_queue("q", poll_interval=LONG)
    worker = Worker(engine, engine.store, spec)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not worker.waiting:     # idle, blocked in its wait
            assert time.monotonic() < deadline
            time.sleep(0.01)
        t0 = time.monotonic()
        wf = engine.run(engine.new_workflow("greet", queue="q"))
        while engine.store.load_workflow(wf.uuid).status != WorkflowStatus.COMPLETED:
            assert time.monotonic() - t0 < PROMPT, "the worker did not wake for the new work"
            time.sleep(0.01)
    finally:
        worker.stop.set()
        other = SQLiteStore(tmp_path / "ewfd.db")   # a write wakes the worker: it sees stop
        add(other)
        other.close()
        thread.join(LONG + 5)
        engine.close()
