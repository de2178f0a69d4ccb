"""An idle in-process ``Worker`` costs nothing, whatever pending rows it cannot claim.

Every state in which the database holds pending work that the worker's claim
cannot take (a paused queue, a retry wait, a row whose ``not_before`` is not a
number) must end in a blocking wait, never in a claim loop; and the wake-up
when the work becomes claimable must stay prompt. The worker runs ``run()`` in
a thread; its claims are counted over a measurement window.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_until

from ewfd import Engine, Step, WorkflowTemplate
from ewfd.model import QueueSpec, WorkflowStatus
from ewfd.store.base import Store
from ewfd.store.sqlite import SQLiteStore
from ewfd.worker import Worker

WINDOW = 1.0          # seconds of measurement: a spinning worker claims thousands of times
POLL = 30.0           # the queue's poll interval: only a wake-up explains a prompt start
MAX_CLAIMS = 5        # in WINDOW: the idle fallback is POLL, a few extra wakes are fine




class CountingStore:
    """Wraps a store and counts ``claim`` calls (everything else passes through)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.claims = 0

    def claim(self, *args: Any, **kwargs: Any) -> Any:
        self.claims += 1
        return self.inner.claim(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def make_engine(store: Store) -> Engine:
    engine = Engine()
    engine.register("noop", lambda ctx, state: None)
    engine.register_template("one", WorkflowTemplate(steps=[Step("noop")]))
    engine.bind(store)
    return engine


class Running:
    """A Worker's ``run()`` in a thread, with its claims counted."""

    def __init__(self, store: Store, queue: str = "q") -> None:
        self.counting = CountingStore(store)
        self.worker = Worker(make_engine(store), self.counting,  # type: ignore[arg-type]
                             QueueSpec(queue, poll_interval=POLL))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:   # reported by the test, not lost in the thread
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stop.set()
        wake(self.counting.inner)
        self.thread.join(10)
        assert not self.thread.is_alive()

    def claims_over(self, seconds: float) -> int:
        before = self.counting.claims
        time.sleep(seconds)   # a measurement window, not a synchronisation
        assert self.error is None, repr(self.error)
        return self.counting.claims - before




def wake(store: Store) -> None:
    """A write from elsewhere, so a worker blocked in its idle wait returns."""
    name = f"wake-{time.monotonic_ns()}"
    if isinstance(store, SQLiteStore):
        conn = sqlite3.connect(store.path)
        conn.execute("INSERT INTO templates (name, steps) VALUES (?, '[]')", (name,))
        conn.commit()
        conn.close()
    else:
        store.save_template(name, [])


def enqueue(store: Store, queue: str = "q") -> str:
    engine = make_engine(store)
    return str(engine.run(engine.new_workflow("one", queue=queue)).uuid)


def status(store: Store, uuid: str) -> WorkflowStatus:
    return store.load_workflow(uuid, typed=False).status


def wait_completed(store: Store, uuid: str) -> None:
    wait_until(lambda: status(store, uuid) == WorkflowStatus.COMPLETED, 20, f"{uuid} to complete")


def other_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` in another thread (the memory store wakes only on other threads' writes)."""
    t = threading.Thread(target=fn)
    t.start()
    t.join()


@pytest.mark.timeout(60)
def test_paused_queue_with_due_work_blocks_and_resume_wakes_at_once(store: Store) -> None:
    store.save_queue(QueueSpec("q", paused=True))
    uuid = enqueue(store)
    with Running(store) as running:
        claims = running.claims_over(WINDOW)
        assert claims <= MAX_CLAIMS, f"{claims} claims in {WINDOW}s on a paused queue"
        t0 = time.monotonic()
        other_thread(lambda: store.set_paused("q", False))
        wait_completed(store, uuid)
        assert time.monotonic() - t0 < POLL / 3     # woken by the resume, not by the poll


@pytest.mark.timeout(60)
def test_retry_wait_blocks_until_due_then_runs(store: Store) -> None:
    uuid = enqueue(store)
    claimed = store.claim("q", "someone:1:1", 30)
    assert claimed is not None
    due = time.time() + 1.5
    store.release(claimed.lease, status=WorkflowStatus.PENDING, retry_in=1.5)
    with Running(store) as running:
        claims = running.claims_over(WINDOW)
        assert claims <= MAX_CLAIMS, f"{claims} claims in {WINDOW}s waiting for a retry"
        wait_completed(store, uuid)
        assert time.time() - due < POLL / 3         # woken at the due time, not by the poll


@pytest.mark.timeout(60)
def test_pending_rows_it_can_never_claim_neither_spin_nor_crash(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ewfd.db")
    try:
        conn = sqlite3.connect(store.path)
        for bad in ("'soon'", "X'00'"):           # not a number: never due for the claim
            conn.execute(f"INSERT INTO jobs (queue, workflow, not_before) VALUES "
                         f"('q', 'one', {bad})")
        conn.commit()
        conn.close()
        with Running(store) as running:
            claims = running.claims_over(WINDOW)
            assert claims <= MAX_CLAIMS, f"{claims} claims in {WINDOW}s"
            uuid = enqueue(store)                   # good work next to them still runs
            wait_completed(store, uuid)
    finally:
        store.close()


@pytest.mark.timeout(60)
def test_enqueue_through_the_same_store_object_wakes_the_worker(store: Store) -> None:
    """The embedded way: the app enqueues on the engine's store that the worker uses too."""
    with Running(store) as running:
        running.claims_over(0.2)                    # let it settle into its idle wait
        for _ in range(5):
            t0 = time.monotonic()
            uuid = enqueue(store)
            wait_completed(store, uuid)
            assert time.monotonic() - t0 < POLL / 3  # woken by the enqueue, not by the poll


@pytest.mark.timeout(60)
def test_workers_of_two_queues_sharing_one_store_each_wake_for_their_own(store: Store) -> None:
    """One thread's look at the database must not use up the wake-up of another."""
    with Running(store, "a"), Running(store, "b") as b:
        b.claims_over(0.2)                          # let both settle into their idle wait
        for queue in ("b", "a", "b", "b", "a"):
            t0 = time.monotonic()
            uuid = enqueue_elsewhere(store, queue)
            wait_completed(store, uuid)
            assert time.monotonic() - t0 < POLL / 3, f"queue {queue}: woken by the poll"


def enqueue_elsewhere(store: Store, queue: str) -> str:
    """Enqueue through another connection (SQLite) or another thread (memory)."""
    if isinstance(store, SQLiteStore):
        other = SQLiteStore(store.path)
        try:
            return enqueue(other, queue)
        finally:
            other.close()
    out: list[str] = []
    other_thread(lambda: out.append(enqueue(store, queue)))
    return out[0]


@pytest.mark.timeout(60)
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_a_thread_that_waited_leaves_no_descriptor_behind(tmp_path: Path) -> None:
    """Each waiting thread has its own inotify descriptor: it must go with the thread."""
    store = SQLiteStore(tmp_path / "ewfd.db")
    try:
        def count() -> int:
            return len(os.listdir("/proc/self/fd"))

        before = count()
        for _ in range(20):
            other_thread(lambda: store.wait_for_change(0))
        gc.collect()
        assert count() <= before + 1
    finally:
        store.close()
