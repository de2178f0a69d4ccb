"""Leases and retry waits are immune to wall-clock steps (issue 10, E10).

The wall clock is stepped by monkeypatching ``time.time`` in this process (the
daemon-level test, ``tests/e2e/test_daemon_clock_steps.py``, steps it for real processes).
A lease must not expire because the clock jumped forward (another process would take
over a step that still runs), and a retry wait must not grow because it jumped back
(a 4 s wait would last an hour), nor shrink because it jumped forward.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ewfd import MemoryStore, SQLiteStore, Step, Workflow, WorkflowStatus
from ewfd.store.base import Store

OWNER = "host-a:1234:99"
S = WorkflowStatus


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "ewfd.db")
    yield s
    s.close()


@pytest.fixture
def step_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``step_clock(seconds)`` moves this process's wall clock by ``seconds``."""
    real = time.time
    offset = [0.0]
    monkeypatch.setattr(time, "time", lambda: real() + offset[0])

    def step(seconds: float) -> None:
        offset[0] += seconds

    yield step


def add(store: Store) -> Workflow:
    wf = Workflow(uuid=str(uuid.uuid4()), name="w", steps=[Step("a")], queue="q")
    store.create_workflow(wf, "{}")
    return wf


def claim_within(store: Store, seconds: float) -> float:
    """Seconds until the queue's workflow could be claimed; fails after ``seconds``."""
    began = time.monotonic()
    while store.claim("q", OWNER, 60) is None:
        if time.monotonic() - began > seconds:
            raise AssertionError(f"not claimable within {seconds}s")
        time.sleep(0.02)
    return time.monotonic() - began


@pytest.mark.timeout(30)
def test_a_retry_wait_is_not_stretched_by_a_step_back(store: Store, step_clock: object) -> None:
    add(store)
    claimed = store.claim("q", OWNER, 60)
    assert claimed is not None
    store.release(claimed.lease, status=S.PENDING, retry_in=1.0)
    step_clock(-3600)   # type: ignore[operator]
    due_in = store.due_in("q")
    assert due_in is not None and due_in <= 1.0
    assert claim_within(store, 10.0) < 10.0


@pytest.mark.timeout(30)
def test_a_retry_wait_is_not_cut_short_by_a_step_forward(store: Store,
                                                        step_clock: object) -> None:
    add(store)
    claimed = store.claim("q", OWNER, 60)
    assert claimed is not None
    store.release(claimed.lease, status=S.PENDING, retry_in=30.0)
    step_clock(3600)   # type: ignore[operator]
    assert store.claim("q", OWNER, 60) is None
    due_in = store.due_in("q")
    assert due_in is not None and 25.0 < due_in <= 30.0


def test_a_lease_does_not_expire_when_the_clock_jumps_forward(store: Store,
                                                              step_clock: object) -> None:
    wf = add(store)
    assert store.claim("q", OWNER, 30) is not None
    step_clock(3600)   # type: ignore[operator]
    assert store.interrupt(expired=True, reason="lease expired") == []
    assert store.renew_leases([OWNER], 30) == 1
    step_clock(-7200)   # type: ignore[operator]
    assert store.interrupt(expired=True, reason="lease expired") == []
    assert store.load_workflow(wf.uuid).status == S.RUNNING


@pytest.mark.timeout(30)
def test_a_lease_still_expires_after_its_length(store: Store, step_clock: object) -> None:
    wf = add(store)
    assert store.claim("q", OWNER, 1.0) is not None
    step_clock(-3600)   # type: ignore[operator]   # back: must not make it last an hour
    began = time.monotonic()
    while not store.interrupt(expired=True, reason="lease expired"):
        assert time.monotonic() - began < 10, "the lease never expired"
        time.sleep(0.05)
    assert store.load_workflow(wf.uuid).status == S.PENDING


def test_a_wait_stored_on_another_clock_is_never_longer_than_itself(tmp_path: Path) -> None:
    """A due time written under another boot's clock (a host whose clock was wrong when it
    booted) is further away than its wait: it is due now, not in an hour."""
    store = SQLiteStore(tmp_path / "ewfd.db")
    try:
        wf = add(store)
        claimed = store.claim("q", OWNER, 60)
        assert claimed is not None
        store.release(claimed.lease, status=S.PENDING, retry_in=4.0)
        with contextlib.closing(sqlite3.connect(tmp_path / "ewfd.db")) as conn, conn:
            conn.execute("UPDATE jobs SET not_before = not_before + 3600 WHERE uuid = ?",
                         (wf.uuid,))
        due_in = store.due_in("q")
        assert due_in is not None and due_in <= 0
        assert store.claim("q", OWNER, 60) is not None
    finally:
        store.close()


def test_every_process_on_the_host_reads_the_same_clock(tmp_path: Path,
                                                        step_clock: object) -> None:
    """Two stores opened on either side of a clock step agree on the time."""
    first = SQLiteStore(tmp_path / "ewfd.db")
    step_clock(3600)   # type: ignore[operator]
    second = SQLiteStore(tmp_path / "ewfd.db")
    try:
        add(first)
        claimed = first.claim("q", OWNER, 30)
        assert claimed is not None
        assert second.interrupt(expired=True, reason="lease expired") == []
        first.release(claimed.lease, status=S.PENDING, retry_in=30.0)
        due_in = second.due_in("q")
        assert due_in is not None and 25.0 < due_in <= 30.0
    finally:
        first.close()
        second.close()
