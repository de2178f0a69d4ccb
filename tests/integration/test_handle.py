"""``engine.enqueue`` and ``WorkflowHandle``: wait for the outcome of queued work.

Workers here are in-process ``Worker`` threads with a long poll interval, so a
wait that ends promptly was woken by the store's change notification. Both
stores run every test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ewfd import (
    Engine,
    MemoryStore,
    QueueNotFound,
    SQLiteStore,
    Step,
    TemplateNotFound,
    WorkflowFailed,
    WorkflowHandle,
    WorkflowNotFound,
    WorkflowStatus,
    WorkflowTemplate,
)
from ewfd.worker import Worker

LONG = 30.0      # the workers' poll interval: a wait that took this long was not woken
PROMPT = 3.0     # a woken wait ends well within this, even on a loaded machine


@pytest.fixture(params=["memory", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "ewfd.db")
    eng = Engine(store=store)
    release = threading.Event()
    eng.register("double", lambda ctx, state: state.update(n=state["n"] * 2))
    eng.register("boom", lambda ctx, state: (_ for _ in ()).throw(RuntimeError("card declined")))
    eng.register("gate", lambda ctx, state: release.wait(LONG))
    eng.register_template("double", WorkflowTemplate(steps=[Step("double")]))
    eng.register_template("boom", WorkflowTemplate(steps=[Step("boom")]))
    eng.register_template("gated", WorkflowTemplate(steps=[Step("gate"), Step("double")]))
    eng.create_queue("q", poll_interval=LONG)
    eng.release = release   # type: ignore[attr-defined]
    try:
        yield eng
    finally:
        release.set()
        eng.close()


@pytest.fixture
def worker(engine: Engine) -> Iterator[Worker]:
    """A worker thread on queue ``q``, idle-waiting before the test starts."""
    w = Worker(engine, engine.store, engine.store.load_queue("q"))
    thread = threading.Thread(target=w.run)
    thread.start()
    deadline = time.monotonic() + 10
    while not w.waiting:
        assert time.monotonic() < deadline, "the worker never went idle"
        time.sleep(0.01)
    try:
        yield w
    finally:
        w.stop.set()
        engine.create_queue("wake-the-worker")   # any write ends its wait: it sees stop
        thread.join(LONG + 5)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.monotonic()
    result = fn()
    return result, time.monotonic() - t0


def test_enqueue_stores_a_pending_workflow_and_returns_its_handle(engine: Engine) -> None:
    handle = engine.enqueue("double", queue="q", state={"n": 21}, display_name="the answer",
                            metadata={"who": "me"})
    assert isinstance(handle, WorkflowHandle)
    wf = engine.store.load_workflow(handle.uuid)
    assert (wf.status, wf.queue, wf.state, wf.display_name, wf.metadata) == (
        WorkflowStatus.PENDING, "q", {"n": 21}, "the answer", {"who": "me"})
    assert handle.load().uuid == handle.uuid
    assert handle.uuid in repr(handle)


def test_enqueue_refuses_an_unknown_template_or_queue(engine: Engine) -> None:
    with pytest.raises(TemplateNotFound):
        engine.enqueue("nope", queue="q")
    with pytest.raises(QueueNotFound, match="create_queue"):
        engine.enqueue("double", queue="nope")
    assert engine.store.list_workflows() == []


def test_enqueue_with_a_known_uuid_returns_the_stored_workflow(engine: Engine) -> None:
    first = engine.enqueue("double", queue="q", state={"n": 1}, uuid="order-1001")
    again = engine.enqueue("double", queue="q", state={"n": 2}, uuid="order-1001")
    assert first.uuid == again.uuid == "order-1001"
    assert [w.state for w in engine.store.list_workflows()] == [{"n": 1}]


@pytest.mark.timeout(60)
def test_wait_and_result_return_promptly_when_a_worker_completes_it(
        engine: Engine, worker: Worker) -> None:
    handle = engine.enqueue("double", queue="q", state={"n": 21})
    wf, took = timed(lambda: handle.wait(timeout=LONG))
    assert wf.status == WorkflowStatus.COMPLETED and wf.state == {"n": 42}
    assert took < PROMPT
    assert handle.result(timeout=0) == {"n": 42}     # already finished: no wait at all


@pytest.mark.timeout(60)
def test_wait_sees_a_workflow_through_its_running_step(engine: Engine, worker: Worker) -> None:
    handle = engine.enqueue("gated", queue="q", state={"n": 4})
    with pytest.raises(TimeoutError):
        handle.wait(timeout=0.2)
    engine.release.set()   # type: ignore[attr-defined]
    state, took = timed(lambda: handle.result(timeout=LONG))
    assert state == {"n": 8} and took < PROMPT


@pytest.mark.timeout(60)
def test_result_raises_workflow_failed_for_a_failed_workflow(
        engine: Engine, worker: Worker) -> None:
    handle = engine.enqueue("boom", queue="q")
    with pytest.raises(WorkflowFailed, match="card declined") as caught:
        handle.result(timeout=LONG)
    assert caught.value.workflow.status == WorkflowStatus.FAILED
    assert caught.value.workflow.error == "step boom: card declined"
    assert handle.wait(timeout=0).status == WorkflowStatus.FAILED   # wait itself does not raise


def test_result_raises_workflow_failed_for_a_cancelled_workflow(engine: Engine) -> None:
    handle = engine.enqueue("double", queue="q", state={"n": 1})
    engine.cancel(handle.uuid)
    with pytest.raises(WorkflowFailed, match="cancelled") as caught:
        handle.result(timeout=1)
    assert caught.value.workflow.status == WorkflowStatus.CANCELLED


def test_wait_times_out_with_timeout_error(engine: Engine) -> None:
    handle = engine.enqueue("double", queue="q", state={"n": 1})   # no worker runs it
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=rf"{handle.uuid} is still pending after 0.3s"):
        handle.wait(timeout=0.3)
    assert 0.29 <= time.monotonic() - t0 < PROMPT
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.05)
    with pytest.raises(ValueError, match="timeout"):
        handle.wait(timeout=-1)


def test_a_handle_from_a_uuid_waits_like_one_from_enqueue(engine: Engine) -> None:
    uuid = engine.enqueue("double", queue="q", state={"n": 3}).uuid
    Worker(engine, engine.store, engine.store.load_queue("q")).drain()
    assert engine.handle(uuid).result(timeout=1) == {"n": 6}
    with pytest.raises(WorkflowNotFound):
        engine.handle("no-such-uuid").wait(timeout=1)


@pytest.mark.timeout(60)
def test_a_handle_in_another_thread_with_its_own_store_is_woken(tmp_path: Path) -> None:
    """The client of a daemon: its own connection, another writer's commits."""
    db = tmp_path / "ewfd.db"
    runner = Engine(store=SQLiteStore(db))
    runner.register("double", lambda ctx, state: state.update(n=state["n"] * 2))
    runner.register_template("double", WorkflowTemplate(steps=[Step("double")]))
    runner.create_queue("q", poll_interval=LONG)
    client_store = SQLiteStore(db)
    client = WorkflowHandle(client_store, runner.enqueue("double", queue="q",
                                                         state={"n": 5}).uuid)
    results: list[tuple[Any, float]] = []
    waiter = threading.Thread(target=lambda: results.append(timed(
        lambda: client.result(timeout=LONG))))
    waiter.start()
    try:
        Worker(runner, runner.store, runner.store.load_queue("q")).drain()
        waiter.join(LONG + 5)
        assert results and results[0][0] == {"n": 10} and results[0][1] < PROMPT
    finally:
        runner.close()
        client_store.close()
