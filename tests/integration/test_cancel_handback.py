"""A cancel is honoured at every hand-back (issue 10, E12).

A workflow goes back to ``pending`` when a worker hands it back (a retry wait longer
than the poll interval, a shutdown), when its worker dies or loses its lease, and when
the supervisor kills a worker for a timeout. A cancel requested while it ran must end
it ``cancelled`` right there, not when it is next claimed (perhaps minutes later).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from ewfd import (
    Engine,
    MemoryStore,
    RetryPolicy,
    SQLiteStore,
    Step,
    StepContext,
    Workflow,
    WorkflowStatus,
    WorkflowTemplate,
    backoff,
)
from ewfd.model import Attempt, Claimed, utcnow
from ewfd.store.base import Store
from ewfd.worker import Worker

S = WorkflowStatus
OWNER = "host-a:1234:99"
WAIT = 10.0


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "ewfd.db")
    yield s
    s.close()


def claimed_and_cancelled(store: Store) -> Claimed:
    wf = Workflow(uuid=str(uuid.uuid4()), name="w", steps=[Step("a")], queue="q")
    store.create_workflow(wf, json.dumps({}))
    claimed = store.claim("q", OWNER, 60)
    assert claimed is not None
    assert store.cancel_workflow(wf.uuid) == S.RUNNING     # flagged: it is running
    return claimed


def failed_attempt() -> Attempt:
    now = utcnow()
    return Attempt("a", 0, 1, now, now, 1.0, "failed", "boom", 1)


def test_a_hand_back_of_a_cancelled_workflow_cancels_it(store: Store) -> None:
    claimed = claimed_and_cancelled(store)
    status = store.release(claimed.lease, status=S.PENDING, attempt=failed_attempt(),
                           retry_in=30.0)
    assert status == S.CANCELLED
    wf = store.load_workflow(claimed.workflow.uuid)
    assert (wf.status, wf.error) == (S.CANCELLED, "cancelled")
    assert [a.outcome for a in store.history(wf.uuid)] == ["failed"]
    assert store.claim("q", OWNER, 60) is None


def test_a_release_to_a_final_status_is_unchanged_by_a_cancel(store: Store) -> None:
    claimed = claimed_and_cancelled(store)
    assert store.release(claimed.lease, status=S.FAILED, error="step a: boom") == S.FAILED


@pytest.mark.parametrize("how", ["owner", "expired"])
def test_an_interrupted_cancelled_workflow_is_cancelled_not_re_run(store: Store,
                                                                  how: str) -> None:
    claimed = claimed_and_cancelled(store)
    if how == "owner":
        got = store.interrupt(owner=OWNER, reason="SIGKILL")
    else:
        store.renew_leases([OWNER], -1.0)      # its lease ran out
        got = store.interrupt(expired=True, reason="lease expired")
    assert [(i.uuid, i.status) for i in got] == [(claimed.workflow.uuid, S.CANCELLED)]
    wf = store.load_workflow(claimed.workflow.uuid)
    assert (wf.status, wf.error) == (S.CANCELLED, "cancelled")
    assert [a.outcome for a in store.history(wf.uuid)] == ["interrupted"]
    assert store.claim("q", OWNER, 60) is None


def test_a_workflow_pending_in_a_retry_wait_is_cancelled_at_once(store: Store) -> None:
    wf = Workflow(uuid=str(uuid.uuid4()), name="w", steps=[Step("a")], queue="q")
    store.create_workflow(wf, "{}")
    claimed = store.claim("q", OWNER, 60)
    assert claimed is not None
    assert store.release(claimed.lease, status=S.PENDING, attempt=failed_attempt(),
                         retry_in=30.0) == S.PENDING
    assert store.cancel_workflow(wf.uuid) == S.CANCELLED
    assert store.load_workflow(wf.uuid).status == S.CANCELLED


# -- the runner: what the in-process worker (and so every daemon worker) does -------------------
@pytest.fixture(params=["memory", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    s: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "ewfd.db")
    eng = Engine(store=s)
    yield eng
    eng.close()


def cancelling_step(engine: Engine, then: Any = None) -> Any:
    """A step that is cancelled (by someone else: the API) while it runs, then fails."""

    def step(ctx: StepContext, state: dict[str, Any]) -> None:
        assert engine.cancel(ctx.workflow_uuid) == S.RUNNING
        if then is not None:
            then()
        raise RuntimeError("failed after the cancel")

    return step


@pytest.mark.timeout(30)
def test_cancel_during_an_attempt_that_fails_into_a_long_wait(engine: Engine) -> None:
    ends: list[Any] = []
    engine.register("flaky", cancelling_step(engine))
    engine.register_template("t", WorkflowTemplate(
        steps=[Step("flaky", retry=RetryPolicy(5, backoff.constant(30.0)))],
        after_workflow=[lambda wf, exc: ends.append(wf.status)]))
    spec = engine.create_queue("q", poll_interval=0.1)     # 30 s > poll: the wait is handed back
    wf = engine.run(engine.new_workflow("t", queue="q"))
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        outcomes = Worker(engine, engine.store, spec).drain()
    assert time.monotonic() - started < WAIT
    assert [o.workflow.status for o in outcomes] == [S.CANCELLED]
    assert engine.store.load_workflow(wf.uuid).status == S.CANCELLED
    assert ends == [S.CANCELLED]
    assert [e["event"] for e in logs if e["event"].startswith("workflow.")] == [
        "workflow.started", "workflow.cancelled"]


@pytest.mark.timeout(30)
def test_cancel_then_shutdown_during_a_short_wait(engine: Engine) -> None:
    """A short wait is slept in place; a stop request ends it with a hand-back, which must
    honour the cancel that came before."""
    spec = engine.create_queue("q", poll_interval=5.0)
    worker = Worker(engine, engine.store, spec)
    engine.register("flaky", cancelling_step(engine, then=worker.stop.set))
    engine.register_template("t", WorkflowTemplate(
        steps=[Step("flaky", retry=RetryPolicy(5, backoff.constant(1.0)))]))
    wf = engine.run(engine.new_workflow("t", queue="q"))
    outcome = worker.run_once()
    assert outcome is not None and outcome.workflow.status == S.CANCELLED
    assert engine.store.load_workflow(wf.uuid).status == S.CANCELLED
