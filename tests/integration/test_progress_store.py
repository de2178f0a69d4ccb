"""Progress reported by a running step: the store's column, and the engine that fills it."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from ewfd import Engine, SQLiteStore, Step, StepContext, WorkflowStatus, WorkflowTemplate
from ewfd.errors import LeaseLost
from ewfd.model import Attempt, Claimed, Workflow, utcnow
from ewfd.store.base import Store
from ewfd.store.memory import MemoryStore

WAIT = 10.0


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "ewfd.db")
    try:
        yield s
    finally:
        s.close()


def claimed(store: Store, steps: tuple[str, ...] = ("a", "b")) -> Claimed:
    wf = Workflow(uuid=str(uuid.uuid4()), name="greet", steps=[Step(s) for s in steps],
                  queue="q")
    store.create_workflow(wf, json.dumps({}))
    got = store.claim("q", "host:1:1", 30.0)
    assert got is not None
    return got


def attempt(step: str, index: int, outcome: str = "completed") -> Attempt:
    now = utcnow()
    return Attempt(step, index, 1, now, now, 1.0, outcome, None, 1)


def test_saved_progress_reads_back_with_the_workflow(store: Store) -> None:
    c = claimed(store)
    before = store.load_workflow(c.workflow.uuid)
    assert before.progress is None
    store.save_progress(c.lease, step_index=0, fraction=0.5, message="half way")
    wf = store.load_workflow(c.workflow.uuid)
    assert wf.progress is not None
    assert (wf.progress.fraction, wf.progress.message, wf.progress.step_index) == (
        0.5, "half way", 0)
    assert wf.updated_at == before.updated_at     # a report is not a change of the workflow
    assert store.list_workflows()[0].progress == wf.progress


@pytest.mark.parametrize("boundary", ["save_step", "record_attempt", "release", "reclaim"])
def test_a_step_boundary_clears_the_progress(store: Store, boundary: str) -> None:
    c = claimed(store)
    store.save_progress(c.lease, step_index=0, fraction=0.9, message=None)
    if boundary == "save_step":
        store.save_step(c.lease, step_index=0, state_json="{}", attempt=attempt("a", 0),
                        completed=False)
    elif boundary == "record_attempt":
        store.record_attempt(c.lease, attempt=attempt("a", 0, "failed"))
    elif boundary == "release":
        store.release(c.lease, status=WorkflowStatus.PENDING)
    else:
        store.interrupt(owner=c.lease.owner, reason="worker died")
        assert store.claim("q", "host:2:2", 30.0) is not None
    assert store.load_workflow(c.workflow.uuid).progress is None


def test_progress_is_fenced(store: Store) -> None:
    c = claimed(store)
    store.save_step(c.lease, step_index=0, state_json="{}", attempt=attempt("a", 0),
                    completed=False)
    with pytest.raises(LeaseLost):     # a late report of step 0 after the step was saved
        store.save_progress(c.lease, step_index=0, fraction=1.0, message=None)
    store.interrupt(owner=c.lease.owner, reason="worker died")
    with pytest.raises(LeaseLost):     # the lease is gone
        store.save_progress(c.lease, step_index=1, fraction=0.1, message=None)
    assert store.load_workflow(c.workflow.uuid).progress is None


@pytest.mark.timeout(60)
def test_a_step_reporting_in_a_loop_is_stored_and_logged_at_most_once_a_second(
        tmp_path: Path) -> None:
    engine = Engine(store=SQLiteStore(tmp_path / "ewfd.db"))
    reported, release = threading.Event(), threading.Event()

    def crunch(ctx: StepContext, state: dict[str, Any]) -> None:
        for i in range(20_001):
            ctx.progress(i / 40_000, f"row {i}")      # 0 .. 0.5
        reported.set()
        release.wait(WAIT)

    engine.register("crunch", crunch)
    engine.register_template("crunch", WorkflowTemplate(steps=[Step("crunch")]))
    wf = engine.new_workflow("crunch")
    with structlog.testing.capture_logs() as logs:
        t0 = time.monotonic()
        future = engine.run(wf, background=True)
        assert reported.wait(WAIT)
        burst = time.monotonic() - t0
        deadline = time.monotonic() + WAIT
        while (p := engine.store.load_workflow(wf.uuid).progress) is None or p.fraction < 0.5:
            assert time.monotonic() < deadline, f"stored progress: {p}"
            time.sleep(0.02)
        assert p.message == "row 20000" and p.step_index == 0
        release.set()
        done = future.result(WAIT)
    engine.close()
    assert done.status == WorkflowStatus.COMPLETED and done.progress is None
    lines = [e for e in logs if e["event"] == "step.progress"]
    assert 2 <= len(lines) <= 2 + int(burst) + 1       # the first, then one a second at most
    assert lines[0]["fraction"] < 0.5 and lines[-1]["fraction"] == 0.5   # latest wins
    assert lines[-1]["message"] == "row 20000" and lines[-1]["step"] == "crunch"
    assert lines[-1]["workflow_uuid"] == wf.uuid and lines[-1]["attempt"] == 1
