"""The retention service on a MemoryStore with fake clocks: what a pass deletes, when the next
pass comes, and that a pass stops at its time budget."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import structlog.testing

from ewfd.config import RetentionConfig
from ewfd.model import Step, Workflow, WorkflowStatus
from ewfd.retention import Retention
from ewfd.store.memory import MemoryStore

S = WorkflowStatus
LOG = structlog.get_logger("test")


class Ticks:
    """A monotonic clock the test moves (and that can move a little on every read)."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def add(store: MemoryStore, status: WorkflowStatus) -> str:
    queue = f"q-{uuid.uuid4()}"      # its own queue: the claim below takes this one
    wf = Workflow(uuid=str(uuid.uuid4()), name="greet", steps=[Step("a")], queue=queue)
    store.create_workflow(wf, json.dumps({}))
    if status == S.PENDING:
        return wf.uuid
    claimed = store.claim(queue, "host:1:1", 30.0)
    assert claimed is not None and claimed.workflow.uuid == wf.uuid
    if status != S.RUNNING:
        store.release(claimed.lease, status=status)
    return wf.uuid


def statuses(store: MemoryStore) -> list[str]:
    return sorted(str(w.status) for w in store.list_workflows())


def later(seconds: float) -> Any:
    """A wall clock ``seconds`` ahead of now: every row written so far is that old."""
    return lambda: time.time() + seconds


def test_nothing_is_due_without_a_policy() -> None:
    assert not Retention().due(RetentionConfig())
    assert Retention().due(RetentionConfig(failed=1.0))


def test_a_pass_deletes_each_status_past_its_own_retention_and_nothing_unfinished() -> None:
    store = MemoryStore()
    for status in (S.PENDING, S.RUNNING, S.COMPLETED, S.COMPLETED, S.FAILED, S.CANCELLED):
        add(store, status)
    policy = RetentionConfig(completed=60.0, failed=7200.0)       # cancelled: kept forever
    service = Retention(clock=later(120))                          # rows are 2 minutes old
    with structlog.testing.capture_logs() as logs:
        counts = service.run_once(store, policy, LOG)
    assert counts == {"completed": 2, "failed": 0}
    assert statuses(store) == ["cancelled", "failed", "pending", "running"]
    assert logs == [{"event": "retention.pruned", "log_level": "info", "completed": 2,
                     "failed": 0, "more": False, "duration_ms": logs[0]["duration_ms"]}]
    assert service.pruned == {"completed": 2, "failed": 0, "cancelled": 0}
    with structlog.testing.capture_logs() as logs:
        assert service.run_once(store, policy, LOG) == {"completed": 0, "failed": 0}
    assert logs == []      # a pass that deleted nothing says nothing


def test_passes_come_every_interval() -> None:
    ticks = Ticks()
    service = Retention(monotonic=ticks)
    policy = RetentionConfig(completed=1.0, interval=30.0)
    assert service.due(policy)
    service.run_once(MemoryStore(), policy, LOG)
    ticks.now += 29.9
    assert not service.due(policy)
    ticks.now += 0.2
    assert service.due(policy)


def test_a_pass_stops_at_its_budget_and_the_next_one_comes_at_once() -> None:
    store = MemoryStore()
    for _ in range(25):
        add(store, S.COMPLETED)
    ticks = Ticks(step=0.2)                    # every read of the clock: 200 ms of work
    service = Retention(clock=later(10), monotonic=ticks, batch=10, budget=0.1)
    policy = RetentionConfig(completed=1.0, interval=3600.0)
    with structlog.testing.capture_logs() as logs:
        assert service.run_once(store, policy, LOG) == {"completed": 10}
    assert logs[0]["more"] is True
    assert service.due(policy)                 # a backlog: no waiting for the interval
    passes = 1
    while service.due(policy):
        service.run_once(store, policy, LOG)
        passes += 1
        assert passes < 10
    assert store.list_workflows() == [] and service.pruned["completed"] == 25


def test_describe_gives_the_policy_in_force_for_ctl() -> None:
    service = Retention(clock=lambda: 5000.0)
    policy = RetentionConfig(completed=604800.0, interval=60.0)
    assert service.describe(policy) == {
        "completed": 604800.0, "failed": None, "cancelled": None, "interval": 60.0,
        "last_pass_at": None, "pruned": {"completed": 0, "failed": 0, "cancelled": 0}}
    service.run_once(MemoryStore(), policy, LOG)
    assert service.describe(policy)["last_pass_at"] == 5000.0
