"""The Store contract: one suite, run against every backend.

Each test gets a fresh store from the ``store`` fixture (MemoryStore, and
SQLiteStore on a real file). A new backend (PostgreSQL) adds itself to the
fixture's params and must pass everything here unchanged.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ewfd.errors import LeaseLost, QueueNotFound, StoreError, TemplateNotFound, WorkflowNotFound
from ewfd.model import Attempt, Claimed, QueueSpec, Step, Workflow, WorkflowStatus, utcnow
from ewfd.store.base import Interrupted, Store
from ewfd.store.sqlite import SQLiteStore

S = WorkflowStatus
OWNER = "host-a:1234:99"        # host:pid:start time, as workers name themselves
OTHER = "host-b:5678:42"


def new_wf(queue: str | None = "q", name: str = "greet", steps: tuple[str, ...] = ("a", "b"),
           **kw: Any) -> Workflow:
    return Workflow(uuid=str(uuid.uuid4()), name=name, steps=[Step(s) for s in steps],
                    queue=queue, **kw)


def add(store: Store, queue: str | None = "q", state: dict[str, Any] | None = None,
        **kw: Any) -> Workflow:
    wf = new_wf(queue, **kw)
    store.create_workflow(wf, json.dumps(state or {}))
    return wf


def att(step: str = "a", index: int = 0, n: int = 1, outcome: str = "completed",
        error: str | None = None) -> Attempt:
    now = utcnow()
    return Attempt(step, index, n, now - timedelta(milliseconds=7), now, 7.0, outcome, error,
                   os.getpid())


def claim(store: Store, queue: str = "q", owner: str = OWNER, lease: float = 60.0) -> Claimed:
    c = store.claim(queue, owner, lease)
    assert c is not None
    return c


def status(store: Store, wf: Workflow) -> WorkflowStatus:
    return store.load_workflow(wf.uuid).status


def same_attempt(got: Attempt, want: Attempt) -> None:
    assert (got.step, got.step_index, got.attempt, got.outcome, got.error, got.worker_pid) == (
        want.step, want.step_index, want.attempt, want.outcome, want.error, want.worker_pid)
    assert got.duration_ms == pytest.approx(want.duration_ms)
    assert abs(got.started_at - want.started_at) < timedelta(milliseconds=1)
    assert want.finished_at is not None and got.finished_at is not None
    assert abs(got.finished_at - want.finished_at) < timedelta(milliseconds=1)


def test_implements_protocol(store: Store) -> None:
    assert isinstance(store, Store)


# -- workflows ---------------------------------------------------------------------------
def test_create_and_load(store: Store) -> None:
    when = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    wf = new_wf(display_name="Q3 run", metadata={"region": "us"})
    wf.status = S.RUNNING               # ignored: a new workflow is always pending
    returned = store.create_workflow(wf, '{"n":1,"when":{"__ewfd_type__":"datetime",'
                                         f'"value":"{when.isoformat()}"}}}}')
    assert returned.status == S.PENDING and returned.updated_at is not None
    got = store.load_workflow(wf.uuid)
    assert got.uuid == wf.uuid and got.name == "greet" and got.queue == "q"
    assert got.status == S.PENDING and got.current_step == 0 and got.error is None
    assert got.steps == [Step("a"), Step("b")]
    assert got.display_name == "Q3 run" and got.metadata == {"region": "us"}
    assert got.state == {"n": 1, "when": when}
    assert abs(got.created_at - wf.created_at) < timedelta(milliseconds=1)
    assert got.updated_at is not None and abs(got.updated_at - utcnow()) < timedelta(seconds=5)
    # every load is a fresh object
    got.state["n"] = 2
    got.metadata["x"] = "y"
    again = store.load_workflow(wf.uuid)
    assert again.state["n"] == 1 and again.metadata == {"region": "us"}
    # typed=False leaves tagged values as plain JSON
    raw = store.load_workflow(wf.uuid, typed=False)
    assert raw.state["when"] == {"__ewfd_type__": "datetime", "value": when.isoformat()}
    assert store.list_workflows(typed=False)[0].state == raw.state


def test_missing_workflow(store: Store) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(WorkflowNotFound):
        store.load_workflow(missing)
    with pytest.raises(WorkflowNotFound):
        store.history(missing)
    with pytest.raises(WorkflowNotFound):
        store.cancel_workflow(missing)
    with pytest.raises(WorkflowNotFound):
        store.retry_workflow(missing)
    assert store.delete_workflow(missing) is False
    assert store.claim_workflow(missing, OWNER, 60) is None


def test_duplicate_uuid_is_a_store_error(store: Store) -> None:
    wf = add(store)
    with pytest.raises(StoreError):
        store.create_workflow(Workflow(uuid=wf.uuid, name="other"), "{}")
    assert store.load_workflow(wf.uuid).name == "greet"


def test_list_workflows_newest_first_with_filters(store: Store) -> None:
    a = add(store, "q1")
    b = add(store, "q2", name="other")
    c = add(store, "q1")
    d = add(store, None)
    assert [w.uuid for w in store.list_workflows()] == [d.uuid, c.uuid, b.uuid, a.uuid]
    assert [w.uuid for w in store.list_workflows(queue="q1")] == [c.uuid, a.uuid]
    assert [w.uuid for w in store.list_workflows(name="other")] == [b.uuid]
    assert [w.uuid for w in store.list_workflows(limit=2)] == [d.uuid, c.uuid]
    assert store.list_workflows(queue="q1", name="other") == []
    store.release(claim(store, "q1").lease, status=S.FAILED, error="boom")   # a is oldest
    assert [w.uuid for w in store.list_workflows(status=S.FAILED)] == [a.uuid]
    assert [w.uuid for w in store.list_workflows(status=S.PENDING, queue="q1")] == [c.uuid]


def test_delete_workflow(store: Store) -> None:
    a, b = add(store), add(store)
    c = claim(store)
    store.save_step(c.lease, step_index=0, state_json="{}", attempt=att(), completed=False)
    assert store.delete_workflow(a.uuid) is True
    with pytest.raises(WorkflowNotFound):
        store.load_workflow(a.uuid)
    with pytest.raises(WorkflowNotFound):
        store.history(a.uuid)
    assert store.delete_workflow(a.uuid) is False
    assert [w.uuid for w in store.list_workflows()] == [b.uuid]


# -- claiming ------------------------------------------------------------------------------
def test_claim_takes_oldest_first(store: Store) -> None:
    a = add(store, state={"name": "x"}, display_name="first", metadata={"k": "v"})
    b = add(store)
    add(store, "elsewhere")
    c1 = claim(store)
    assert c1.workflow.uuid == a.uuid and c1.workflow.status == S.RUNNING
    assert c1.workflow.name == "greet" and c1.workflow.steps == [Step("a"), Step("b")]
    assert c1.workflow.current_step == 0 and c1.workflow.queue == "q"
    assert c1.workflow.display_name == "first" and c1.workflow.metadata == {"k": "v"}
    assert json.loads(c1.state_json) == {"name": "x"}
    assert c1.steps_known is True and c1.cancel_requested is False
    assert c1.lease.owner == OWNER and c1.lease.attempt == 0 and c1.lease.crashes == 0
    assert status(store, a) == S.RUNNING
    c2 = claim(store, owner=OTHER)
    assert c2.workflow.uuid == b.uuid and c2.lease.owner == OTHER
    assert store.claim("q", OWNER, 60) is None
    assert store.claim("no-such-queue", OWNER, 60) is None


def test_claim_returns_none_when_empty(store: Store) -> None:
    assert store.claim("q", OWNER, 60) is None
    add(store, None)
    assert store.claim("q", OWNER, 60) is None


def test_claim_respects_not_before(store: Store) -> None:
    a = add(store)
    store.release(claim(store).lease, status=S.PENDING, retry_in=3600)
    assert status(store, a) == S.PENDING
    assert store.claim("q", OWNER, 60) is None
    assert store.due_in("q") == pytest.approx(3600, abs=5)
    b = add(store)
    assert claim(store).workflow.uuid == b.uuid       # the younger one is due, a is not
    store.retry_workflow(a.uuid)                        # no effect: a is pending
    assert store.claim("q", OWNER, 60) is None


def test_claim_due_not_before_in_the_past(store: Store) -> None:
    a = add(store)
    store.release(claim(store).lease, status=S.PENDING, retry_in=0.0)
    assert claim(store).workflow.uuid == a.uuid


def test_claim_respects_paused_queue(store: Store) -> None:
    a = add(store)
    store.save_queue(QueueSpec("q"))
    assert store.set_paused("q", True) is True
    assert store.claim("q", OWNER, 60) is None
    assert store.set_paused("q", False) is True
    assert claim(store).workflow.uuid == a.uuid


def test_token_increments_on_every_claim(store: Store) -> None:
    add(store)
    tokens = []
    for _ in range(3):
        c = claim(store)
        tokens.append(c.lease.token)
        store.release(c.lease, status=S.PENDING)
    assert tokens[0] < tokens[1] < tokens[2]


def test_claim_workflow_only_pending(store: Store) -> None:
    a = add(store, None, state={"v": 1})
    c = store.claim_workflow(a.uuid, OWNER, 60)
    assert c is not None and c.workflow.uuid == a.uuid and c.lease.owner == OWNER
    assert json.loads(c.state_json) == {"v": 1}
    assert store.claim_workflow(a.uuid, OTHER, 60) is None          # running
    store.save_step(c.lease, step_index=1, state_json="{}", attempt=att("b", 1), completed=True)
    assert store.claim_workflow(a.uuid, OTHER, 60) is None          # completed


# -- fenced writes --------------------------------------------------------------------------
def test_save_step(store: Store) -> None:
    wf = add(store, state={"n": 0})
    c = claim(store)
    failed = att(n=1, outcome="failed", error="boom")
    assert store.record_attempt(c.lease, attempt=failed) is False
    assert store.held_by(OWNER)[0].lease.attempt == 1
    ok = att(n=2)
    assert store.save_step(c.lease, step_index=0, state_json='{"n":1}', attempt=ok,
                           completed=False) is False
    got = store.load_workflow(wf.uuid)
    assert got.state == {"n": 1} and got.current_step == 1 and got.status == S.RUNNING
    held = store.held_by(OWNER)
    assert len(held) == 1 and held[0].lease.attempt == 0 and held[0].lease.token == c.lease.token
    last = att("b", 1)
    assert store.save_step(c.lease, step_index=1, state_json='{"n":2}', attempt=last,
                           completed=True) is False
    got = store.load_workflow(wf.uuid)
    assert got.status == S.COMPLETED and got.current_step == 2 and got.error is None
    assert got.state == {"n": 2}
    hist = store.history(wf.uuid)
    assert len(hist) == 3
    for h, want in zip(hist, [failed, ok, last], strict=True):
        same_attempt(h, want)
    assert store.held_by(OWNER) == []
    with pytest.raises(LeaseLost):      # a completed workflow takes no more writes
        store.save_step(c.lease, step_index=1, state_json="{}", attempt=last, completed=True)


def test_record_attempt(store: Store) -> None:
    wf = add(store)
    c = claim(store)
    a1 = att(n=1, outcome="failed", error="e1")
    a2 = att(n=2, outcome="failed", error="e2")
    assert store.record_attempt(c.lease, attempt=a1) is False
    assert store.record_attempt(c.lease, attempt=a2) is False
    assert status(store, wf) == S.RUNNING
    assert store.held_by(OWNER)[0].lease.attempt == 2
    hist = store.history(wf.uuid)
    same_attempt(hist[0], a1)
    same_attempt(hist[1], a2)


def test_release_to_pending(store: Store) -> None:
    wf = add(store)
    c = claim(store)
    failed = att(n=1, outcome="failed", error="boom")
    store.release(c.lease, status=S.PENDING, attempt=failed)
    got = store.load_workflow(wf.uuid)
    assert got.status == S.PENDING and got.error is None
    same_attempt(store.history(wf.uuid)[0], failed)
    with pytest.raises(LeaseLost):      # the token moved on
        store.cancel_requested(c.lease)
    c2 = claim(store)
    assert c2.lease.token > c.lease.token and c2.lease.attempt == 1
    # a shutdown release with no failed attempt keeps the count
    store.release(c2.lease, status=S.PENDING)
    assert claim(store).lease.attempt == 1


def test_release_to_final_status(store: Store) -> None:
    a, b = add(store), add(store)
    ca, cb = claim(store), claim(store)
    boom = att(n=1, outcome="failed", error="boom")
    store.release(ca.lease, status=S.FAILED, error="step a: boom", attempt=boom)
    got = store.load_workflow(a.uuid)
    assert got.status == S.FAILED and got.error == "step a: boom"
    same_attempt(store.history(a.uuid)[0], boom)
    store.release(cb.lease, status=S.CANCELLED, error="cancelled")
    assert status(store, b) == S.CANCELLED and store.history(b.uuid) == []
    assert store.held_by(OWNER) == []
    for c in (ca, cb):
        with pytest.raises(LeaseLost):
            store.release(c.lease, status=S.PENDING)


def test_stale_lease_is_fenced_off(store: Store) -> None:
    wf = add(store, state={"v": 0})
    old = claim(store)
    store.release(old.lease, status=S.PENDING)
    new = claim(store, owner=OTHER)
    assert new.workflow.uuid == wf.uuid
    before = (store.load_workflow(wf.uuid), store.history(wf.uuid))
    with pytest.raises(LeaseLost):
        store.save_step(old.lease, step_index=0, state_json='{"v":9}', attempt=att(),
                        completed=True)
    with pytest.raises(LeaseLost):
        store.record_attempt(old.lease, attempt=att(outcome="failed"))
    for st in (S.PENDING, S.FAILED, S.COMPLETED):
        with pytest.raises(LeaseLost):
            store.release(old.lease, status=st, error="x", attempt=att(outcome="failed"))
    with pytest.raises(LeaseLost):
        store.cancel_requested(old.lease)
    assert (store.load_workflow(wf.uuid), store.history(wf.uuid)) == before
    assert [h.lease.owner for h in store.held_by(OTHER)] == [OTHER]
    assert store.held_by(OWNER) == []
    # the current lease still works
    assert store.save_step(new.lease, step_index=0, state_json='{"v":1}', attempt=att(),
                           completed=False) is False
    assert store.load_workflow(wf.uuid).state == {"v": 1}


def test_lease_released_as_failed_is_fenced_after_retry(store: Store) -> None:
    wf = add(store, state={"v": 0})
    old = claim(store)
    store.release(old.lease, status=S.FAILED, error="boom")
    assert store.retry_workflow(wf.uuid) is True
    new = claim(store, owner=OTHER)
    assert new.lease.token > old.lease.token
    with pytest.raises(LeaseLost):
        store.save_step(old.lease, step_index=0, state_json='{"v":9}', attempt=att(),
                        completed=False)
    with pytest.raises(LeaseLost):
        store.cancel_requested(old.lease)
    assert store.load_workflow(wf.uuid).state == {"v": 0}
    assert store.cancel_requested(new.lease) is False


def test_lease_of_deleted_workflow_cannot_touch_a_new_one(store: Store) -> None:
    a = add(store)
    stale = claim(store)
    store.delete_workflow(a.uuid)
    b = add(store, state={"v": 0})
    claim(store, owner=OTHER)
    with pytest.raises(LeaseLost):
        store.save_step(stale.lease, step_index=0, state_json='{"v":9}', attempt=att(),
                        completed=False)
    assert store.load_workflow(b.uuid).state == {"v": 0}


def test_held_by(store: Store) -> None:
    a, b, c = add(store), add(store), add(store)
    ca = claim(store, owner=OWNER)
    claim(store, owner=OTHER)
    cc = claim(store, owner=OWNER)
    held = store.held_by(OWNER)
    assert sorted(h.workflow.uuid for h in held) == sorted([a.uuid, c.uuid])
    assert {h.lease for h in held} == {ca.lease, cc.lease}
    assert [h.workflow.uuid for h in store.held_by(OTHER)] == [b.uuid]
    assert store.held_by("nobody") == []
    store.release(ca.lease, status=S.PENDING)
    assert [h.workflow.uuid for h in store.held_by(OWNER)] == [c.uuid]


def test_renew_leases(store: Store) -> None:
    a = add(store, None)
    add(store, None)
    c = store.claim_workflow(a.uuid, OWNER, -1.0)      # a lease that has already expired
    assert c is not None
    (row,) = [r for r in store.resumable() if r.uuid == a.uuid]
    assert row.lease_owner == OWNER and row.lease_expires is not None
    assert row.lease_expires < time.time()
    assert store.renew_leases([OWNER, OTHER], 100.0) == 1
    (row,) = [r for r in store.resumable() if r.uuid == a.uuid]
    assert row.lease_expires is not None and row.lease_expires > time.time() + 90
    assert store.interrupt(expired=True) == []
    assert store.renew_leases([], 100.0) == 0
    assert store.renew_leases([OTHER], 100.0) == 0


# -- interruptions ----------------------------------------------------------------------------
def test_interrupt_by_owner(store: Store) -> None:
    store.save_queue(QueueSpec("q", max_crashes=2))
    wf = add(store)
    mine = add(store)
    c = claim(store)
    store.record_attempt(c.lease, attempt=att(n=1, outcome="failed", error="e"))
    store.save_step(c.lease, step_index=0, state_json='{"s":1}', attempt=att(),
                    completed=False)
    other = claim(store, owner=OTHER)
    assert other.workflow.uuid == mine.uuid
    assert store.interrupt(owner="nobody") == []
    got = store.interrupt(owner=OWNER, reason="SIGKILL")
    assert got == [Interrupted(wf.uuid, "greet", "q", "b", 1, S.PENDING, None)]
    last = store.history(wf.uuid)[-1]
    assert (last.step, last.step_index, last.attempt, last.outcome, last.error,
            last.worker_pid) == ("b", 1, 1, "interrupted", "SIGKILL", 1234)
    assert last.finished_at is not None and last.duration_ms is not None
    loaded = store.load_workflow(wf.uuid)
    assert loaded.status == S.PENDING and loaded.current_step == 1 and loaded.state == {"s": 1}
    with pytest.raises(LeaseLost):
        store.save_step(c.lease, step_index=1, state_json="{}", attempt=att("b", 1),
                        completed=True)
    assert store.cancel_requested(other.lease) is False        # OTHER's lease untouched
    c2 = claim(store)
    assert c2.lease.crashes == 1 and c2.lease.token > c.lease.token
    got = store.interrupt(owner=OWNER, reason="SIGKILL")
    error = "step b: worker died 2 times (last: SIGKILL)"
    assert got == [Interrupted(wf.uuid, "greet", "q", "b", 2, S.FAILED, error)]
    loaded = store.load_workflow(wf.uuid)
    assert loaded.status == S.FAILED and loaded.error == error
    assert [h.outcome for h in store.history(wf.uuid)] == [
        "failed", "completed", "interrupted", "interrupted"]
    with pytest.raises(ValueError):
        store.interrupt()


def test_interrupt_counts_failed_attempts_in_its_row(store: Store) -> None:
    wf = add(store)
    c = claim(store)
    store.record_attempt(c.lease, attempt=att(n=1, outcome="failed", error="e"))
    store.interrupt(owner=OWNER)
    last = store.history(wf.uuid)[-1]
    assert last.outcome == "interrupted" and last.attempt == 2 and last.error == "worker died"


def test_interrupt_default_max_crashes_is_five(store: Store) -> None:
    wf = add(store)                         # no queue row: the default applies
    for n in range(1, 6):
        c = claim(store)
        assert c.lease.crashes == n - 1
        (got,) = store.interrupt(owner=OWNER)
        assert got.crashes == n
        assert got.status == (S.FAILED if n == 5 else S.PENDING)
    error = "step a: worker died 5 times (last: worker died)"
    assert got.error == error and store.load_workflow(wf.uuid).error == error
    assert store.claim("q", OWNER, 60) is None


def test_save_step_resets_crash_count(store: Store) -> None:
    add(store)
    store.interrupt(owner=claim(store).lease.owner)
    c = claim(store)
    assert c.lease.crashes == 1
    store.save_step(c.lease, step_index=0, state_json="{}", attempt=att(), completed=False)
    assert store.held_by(OWNER)[0].lease.crashes == 0


def test_interrupt_expired_only_touches_expired_leases(store: Store) -> None:
    a, b = add(store), add(store)
    ca = claim(store, lease=-1.0)
    cb = claim(store, owner=OTHER, lease=60.0)
    got = store.interrupt(expired=True, reason="lease expired")
    assert [(i.uuid, i.status) for i in got] == [(a.uuid, S.PENDING)]
    assert status(store, a) == S.PENDING and status(store, b) == S.RUNNING
    assert store.history(a.uuid)[-1].error == "lease expired"
    assert store.history(b.uuid) == []
    with pytest.raises(LeaseLost):
        store.cancel_requested(ca.lease)
    assert store.cancel_requested(cb.lease) is False
    assert store.interrupt(expired=True) == []


def test_retry_resets_attempt_and_crash_counts(store: Store) -> None:
    store.save_queue(QueueSpec("q", max_crashes=1))
    wf = add(store)
    c = claim(store)
    store.record_attempt(c.lease, attempt=att(n=1, outcome="failed"))
    (got,) = store.interrupt(owner=OWNER)
    assert got.status == S.FAILED
    assert store.retry_workflow(wf.uuid) is True
    loaded = store.load_workflow(wf.uuid)
    assert loaded.status == S.PENDING and loaded.error is None
    c = claim(store)
    assert (c.lease.attempt, c.lease.crashes) == (0, 0)


def test_graceful_interrupt_counts_no_crash(store: Store) -> None:
    store.save_queue(QueueSpec("q", max_crashes=1))
    wf = add(store)
    c = claim(store)
    got = store.interrupt(owner=OWNER, reason="shutdown timed out", crash=False)
    assert got == [Interrupted(wf.uuid, "greet", "q", "a", 0, S.PENDING, None)]
    last = store.history(wf.uuid)[-1]
    assert (last.outcome, last.error, last.attempt) == ("interrupted", "shutdown timed out", 1)
    assert status(store, wf) == S.PENDING
    with pytest.raises(LeaseLost):
        store.cancel_requested(c.lease)
    # a graceful stop never fails a workflow, even one already at its queue's limit
    store.save_queue(QueueSpec("q", max_crashes=5))
    store.interrupt(owner=claim(store).lease.owner)
    store.interrupt(owner=claim(store).lease.owner)
    store.save_queue(QueueSpec("q", max_crashes=2))
    c = claim(store)
    assert c.lease.crashes == 2
    (got,) = store.interrupt(owner=OWNER, crash=False)
    assert (got.crashes, got.status, got.error) == (2, S.PENDING, None)
    assert status(store, wf) == S.PENDING


def test_lease_owners(store: Store) -> None:
    assert store.lease_owners() == []
    for _ in range(4):
        add(store)
    claim(store, owner=OWNER)
    other = claim(store, owner=OTHER)
    claim(store, owner=OWNER)
    assert sorted(store.lease_owners()) == sorted([OWNER, OTHER])
    store.release(other.lease, status=S.PENDING)
    assert store.lease_owners() == [OWNER]


def test_reject_unknown_queues(store: Store) -> None:
    store.save_queue(QueueSpec("q"))
    ok, ghost, local = add(store, "q"), add(store, "ghost"), add(store, None)
    running = add(store, "ghost2")
    claim(store, "ghost2")
    got = store.reject_unknown_queues()
    assert [u for u, _ in got] == [ghost.uuid]
    error = got[0][1]
    assert "unknown queue 'ghost'" in error
    loaded = store.load_workflow(ghost.uuid)
    assert loaded.status == S.FAILED and loaded.error == error
    assert status(store, ok) == status(store, local) == S.PENDING
    assert status(store, running) == S.RUNNING
    assert store.reject_unknown_queues() == []
    store.save_queue(QueueSpec("late"))
    late = add(store, "late")
    assert store.reject_unknown_queues() == []
    assert status(store, late) == S.PENDING


def test_reject_unknown_queues_with_no_stored_queue(store: Store) -> None:
    a, b, local = add(store, "q"), add(store, "other"), add(store, None)
    assert sorted(u for u, _ in store.reject_unknown_queues()) == sorted([a.uuid, b.uuid])
    assert status(store, local) == S.PENDING


# -- templates and queues -----------------------------------------------------------------------
def test_templates(store: Store) -> None:
    steps = [Step("a").to_dict(), Step("b", timeout=3.0).to_dict()]
    with pytest.raises(TemplateNotFound):
        store.load_template("greet")
    assert store.load_templates() == {}
    store.save_template("greet", steps)
    store.save_template("billing", [Step("charge").to_dict()])
    got = store.load_template("greet")
    assert got == steps
    got.append({"name": "x"})
    got[0]["name"] = "changed"
    assert store.load_template("greet") == steps         # a fresh copy each time
    store.save_template("greet", steps[:1])
    assert store.load_template("greet") == steps[:1]
    templates = store.load_templates()
    assert list(templates) == ["billing", "greet"]
    assert templates["billing"] == [Step("charge").to_dict()]


def test_queues(store: Store) -> None:
    with pytest.raises(QueueNotFound):
        store.load_queue("q")
    spec = QueueSpec("q", workers=3, poll_interval=0.25, auto_delete=True, delete_after=60.0,
                     pop_timeout=1.5, lease=10.0, max_crashes=2, max_tasks_per_worker=7,
                     max_memory=1 << 20)
    store.save_queue(spec)
    store.save_queue(QueueSpec("a", paused=True))
    assert store.load_queue("q") == spec
    assert store.load_queue("a").paused is True
    assert [q.name for q in store.load_queues()] == ["a", "q"]
    assert store.set_paused("q", True) is True
    assert store.set_paused("q", True) is False
    store.save_queue(QueueSpec("q", workers=5))          # an update keeps the paused flag
    got = store.load_queue("q")
    assert got.workers == 5 and got.max_crashes == 5 and got.paused is True
    assert store.set_paused("q", False) is True
    store.delete_queue("q")
    with pytest.raises(QueueNotFound):
        store.load_queue("q")
    with pytest.raises(QueueNotFound):
        store.delete_queue("q")
    with pytest.raises(QueueNotFound):
        store.set_paused("q", True)
    assert [q.name for q in store.load_queues()] == ["a"]


def test_queue_stats(store: Store) -> None:
    store.save_queue(QueueSpec("q", workers=2))
    store.save_queue(QueueSpec("idle", workers=4, paused=True))
    for _ in range(5):
        add(store, "q")
    store.save_step(claim(store).lease, step_index=1, state_json="{}", attempt=att(),
                    completed=True)
    store.release(claim(store).lease, status=S.FAILED, error="x")
    claim(store)                                        # running; two stay pending
    store.cancel_workflow(add(store, "other").uuid)
    add(store, None)
    stats = store.queue_stats()
    assert [s["queue"] for s in stats] == ["idle", "other", "q", None]   # no queue: last
    assert stats[-1]["pending"] == 1 and stats[-1]["workers"] == 0
    by = {s["queue"]: s for s in stats}
    q = by["q"]
    assert (q["workers"], q["paused"], q["pending"], q["running"], q["completed"], q["failed"],
            q["cancelled"]) == (2, False, 2, 1, 1, 1, 0)
    assert 0 <= q["oldest_pending_age_s"] < 60
    assert by["idle"] == {"queue": "idle", "workers": 4, "paused": True, "pending": 0,
                          "running": 0, "completed": 0, "failed": 0, "cancelled": 0,
                          "oldest_pending_age_s": None}
    assert by["other"]["workers"] == 0 and by["other"]["paused"] is False
    assert by["other"]["cancelled"] == 1 and by["other"]["oldest_pending_age_s"] is None


def test_queue_activity(store: Store) -> None:
    assert store.queue_activity("q") == (0, None)
    store.save_queue(QueueSpec("q"))
    n, last = store.queue_activity("q")
    assert n == 0 and last is not None and abs(last - time.time()) < 5
    add(store)
    add(store)
    add(store, "other")
    assert store.queue_activity("q")[0] == 2
    c = claim(store)
    assert store.queue_activity("q")[0] == 2
    store.save_step(c.lease, step_index=1, state_json="{}", attempt=att(), completed=True)
    n, last = store.queue_activity("q")
    assert n == 1 and last is not None and abs(last - time.time()) < 5


# -- operator actions -----------------------------------------------------------------------
def test_cancel_pending_workflow(store: Store) -> None:
    wf = add(store)
    assert store.cancel_workflow(wf.uuid) == S.CANCELLED
    assert status(store, wf) == S.CANCELLED
    assert store.claim("q", OWNER, 60) is None
    assert store.claim_workflow(wf.uuid, OWNER, 60) is None
    assert store.cancel_workflow(wf.uuid) is None


def test_cancel_running_workflow_is_flagged(store: Store) -> None:
    wf = add(store)
    c = claim(store)
    assert store.cancel_requested(c.lease) is False
    assert store.cancel_workflow(wf.uuid) == S.RUNNING
    assert status(store, wf) == S.RUNNING
    assert store.cancel_requested(c.lease) is True
    assert store.record_attempt(c.lease, attempt=att(n=1, outcome="failed")) is True
    assert store.save_step(c.lease, step_index=0, state_json="{}", attempt=att(),
                           completed=False) is True
    assert store.held_by(OWNER)[0].cancel_requested is True
    store.release(c.lease, status=S.CANCELLED, error="cancelled")
    assert status(store, wf) == S.CANCELLED
    assert store.cancel_workflow(wf.uuid) is None


def test_cancel_finished_workflow(store: Store) -> None:
    wf = add(store)
    store.save_step(claim(store).lease, step_index=1, state_json="{}", attempt=att(),
                    completed=True)
    assert store.cancel_workflow(wf.uuid) is None
    assert status(store, wf) == S.COMPLETED


def test_retry_workflow(store: Store) -> None:
    failed, cancelled, completed, pending = add(store), add(store), add(store), add(store)
    c = claim(store)
    store.save_step(c.lease, step_index=0, state_json='{"k":1}', attempt=att(), completed=False)
    store.release(c.lease, status=S.FAILED, error="step b: boom")
    store.cancel_workflow(cancelled.uuid)
    store.save_step(claim(store).lease, step_index=1, state_json="{}", attempt=att(),
                    completed=True)
    running = claim(store)
    assert running.workflow.uuid == pending.uuid
    assert store.retry_workflow(completed.uuid) is False
    assert store.retry_workflow(pending.uuid) is False
    assert status(store, pending) == S.RUNNING
    assert store.retry_workflow(failed.uuid) is True
    assert store.retry_workflow(cancelled.uuid) is True
    got = store.load_workflow(failed.uuid)
    assert got.status == S.PENDING and got.error is None and got.current_step == 1
    assert status(store, cancelled) == S.PENDING
    again = claim(store)
    assert again.workflow.uuid == failed.uuid and again.workflow.current_step == 1
    assert json.loads(again.state_json) == {"k": 1}
    assert claim(store).workflow.uuid == cancelled.uuid
    assert store.retry_workflow(failed.uuid) is False          # running now


def test_prune(store: Store) -> None:
    finished = []
    for _ in range(3):
        finished.append(add(store))
        store.save_step(claim(store).lease, step_index=1, state_json="{}", attempt=att(),
                        completed=True)
    for _ in range(2):
        wf = add(store)
        store.cancel_workflow(wf.uuid)
        finished.append(wf)
    failed = add(store)
    store.release(claim(store).lease, status=S.FAILED, error="x")
    pending = add(store)
    future, past = time.time() + 60, time.time() - 3600
    both = [S.COMPLETED, S.CANCELLED]
    assert store.count_prunable(older_than=past, statuses=both) == 0
    assert list(store.prune(older_than=past, statuses=both)) == []
    assert store.count_prunable(older_than=future, statuses=[S.COMPLETED]) == 3
    assert store.count_prunable(older_than=future, statuses=both) == 5
    assert list(store.prune(older_than=future, statuses=both, batch=2)) == [2, 2, 1]
    assert store.count_prunable(older_than=future, statuses=both) == 0
    for wf in finished:
        with pytest.raises(WorkflowNotFound):
            store.load_workflow(wf.uuid)
        with pytest.raises(WorkflowNotFound):
            store.history(wf.uuid)
    assert status(store, failed) == S.FAILED and status(store, pending) == S.PENDING
    assert list(store.prune(older_than=future, statuses=[S.FAILED])) == [1]
    assert [w.uuid for w in store.list_workflows()] == [pending.uuid]


def test_prune_refuses_unfinished_statuses(store: Store) -> None:
    wf = add(store)
    for statuses in ([S.PENDING], [S.RUNNING], []):
        with pytest.raises(ValueError):
            list(store.prune(older_than=time.time() + 60, statuses=statuses))
        with pytest.raises(ValueError):
            store.count_prunable(older_than=time.time() + 60, statuses=statuses)
    assert status(store, wf) == S.PENDING


def test_resumable(store: Store) -> None:
    pending, running, queued, done = add(store, None), add(store, None), add(store), add(
        store, None)
    c = store.claim_workflow(running.uuid, OWNER, 60)
    assert c is not None
    d = store.claim_workflow(done.uuid, OWNER, 60)
    assert d is not None
    store.save_step(d.lease, step_index=1, state_json="{}", attempt=att(), completed=True)
    assert status(store, queued) == S.PENDING
    got = store.resumable()
    assert [(r.uuid, r.status, r.lease_owner) for r in got] == [
        (pending.uuid, S.PENDING, None), (running.uuid, S.RUNNING, OWNER)]
    assert got[0].lease_expires is None
    assert got[1].lease_expires is not None and abs(got[1].lease_expires - time.time() - 60) < 5


def test_due_in(store: Store) -> None:
    assert store.due_in("q") is None
    add(store)
    due_in = store.due_in("q")
    assert due_in is not None and due_in <= 0
    c = claim(store)
    assert store.due_in("q") is None                   # nothing pending
    store.release(c.lease, status=S.PENDING, retry_in=30)
    assert store.due_in("q") == pytest.approx(30, abs=5)
    add(store)
    c = claim(store)
    store.release(c.lease, status=S.PENDING, retry_in=130)
    assert store.due_in("q") == pytest.approx(30, abs=5)
    assert store.due_in("other") is None


def test_maintenance(store: Store) -> None:
    wf = add(store)
    store.maintenance()
    assert status(store, wf) == S.PENDING


# -- wake-ups ---------------------------------------------------------------------------------
def _write_from_elsewhere(store: Store) -> None:
    """A write by another writer: another connection for SQLite, another thread for memory."""
    if isinstance(store, SQLiteStore):
        other = SQLiteStore(store.path)
        try:
            add(other)
        finally:
            other.close()
    else:
        add(store)


def test_wait_for_change_returns_after_timeout(store: Store) -> None:
    add(store)                  # the waiter's own writes do not wake it
    t0 = time.monotonic()
    store.wait_for_change(0.3)
    elapsed = time.monotonic() - t0
    assert 0.29 <= elapsed < 5


def test_wait_for_change_wakes_on_another_writer(store: Store) -> None:
    store.wait_for_change(0)
    written = threading.Event()

    def write() -> None:
        _write_from_elsewhere(store)
        written.set()

    timer = threading.Timer(0.1, write)
    t0 = time.monotonic()
    timer.start()
    try:
        store.wait_for_change(10.0)
        elapsed = time.monotonic() - t0
        visible = len(store.list_workflows())
    finally:
        timer.join()
    assert written.is_set()
    assert 0.09 <= elapsed < 2 and visible == 1     # woke for the write, not before it


def test_due_in_follows_the_claim_on_a_paused_queue(store: Store) -> None:
    """A worker sleeps until due_in: a row its claim will not take must not be due."""
    add(store)
    store.save_queue(QueueSpec("q", paused=True))
    assert store.due_in("q") is None and store.claim("q", OWNER, 60) is None
    store.set_paused("q", False)
    due = store.due_in("q")
    assert due is not None and due <= 0


def test_a_retry_wait_is_not_cut_short_by_a_claim_whose_clock_was_read_first(
        store: Store) -> None:
    """A claim reads the clock before it waits for the write lock, so its "now" can be a
    little older than the hand-back it then sees: that must not make the retry look like a
    due time from another boot's clock (further ahead than its wait) and run it at once."""
    add(store)
    claimed = store.claim("q", OWNER, 60)
    assert claimed is not None
    store.release(claimed.lease, status=S.PENDING, retry_in=4.0)
    real = store.clock   # type: ignore[attr-defined]

    class Behind:
        def now(self) -> float:
            return float(real.now()) - 0.5

    store.clock = Behind()   # type: ignore[attr-defined]
    try:
        assert store.claim("q", OTHER, 60) is None
        due = store.due_in("q")
        assert due is not None and due > 3.0
    finally:
        store.clock = real   # type: ignore[attr-defined]


def test_a_hand_back_that_a_cancel_turns_into_cancelled_moves_the_token_on(
        store: Store) -> None:
    """Both stores: the old lease is fenced off whether the hand-back stays pending or a
    cancel requested meanwhile ends it."""
    wf = add(store)
    claimed = store.claim("q", OWNER, 60)
    assert claimed is not None
    store.cancel_workflow(wf.uuid)
    assert store.release(claimed.lease, status=S.PENDING, retry_in=30.0) == S.CANCELLED
    with pytest.raises(LeaseLost):
        store.cancel_requested(claimed.lease)
