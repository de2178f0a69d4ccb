"""The Store contract for what ``ewfd ctl`` selects and changes in bulk: queries by uuid
prefix, status, queue, name, age and error; batch retry and cancel; and a second cancel
that changes nothing. Runs against every backend, like ``test_store_contract.py``."""

from __future__ import annotations

import time
import uuid as uuid_mod

import pytest
from test_store_contract import S, add, att, claim

from ewfd.errors import WorkflowNotFound
from ewfd.model import WorkflowQuery
from ewfd.store.base import Store


def fail(store: Store, queue: str = "q", error: str = "step a: boom") -> str:
    """A failed workflow of ``queue`` (the only pending one there)."""
    wf = add(store, queue)
    store.release(claim(store, queue).lease, status=S.FAILED, error=error)
    return wf.uuid


def test_second_cancel_of_a_flagged_workflow_changes_nothing(store: Store) -> None:
    wf = add(store)
    c = claim(store)
    assert store.cancel_workflow(wf.uuid) == S.RUNNING
    assert store.cancel_workflow(wf.uuid) is None           # already asked: no change
    assert store.cancel_requested(c.lease) is True
    assert store.cancel_workflows([wf.uuid]) == {}


def test_query_fields_narrow(store: Store) -> None:
    a = fail(store, "q", "step a: Card declined")
    b = fail(store, "q", "step a: timeout")
    c = fail(store, "r", "step a: card declined")
    pending = add(store, "q", name="other").uuid
    assert store.find_uuids(WorkflowQuery()) == [a, b, c, pending]          # oldest first
    assert [w.uuid for w in store.find_workflows(WorkflowQuery())] == [pending, c, b, a]
    assert store.find_uuids(WorkflowQuery(statuses=(S.FAILED,), queues=("q",))) == [a, b]
    assert store.find_uuids(WorkflowQuery(error="CARD")) == [a, c]
    assert store.find_uuids(WorkflowQuery(names=("other",))) == [pending]
    assert store.find_uuids(WorkflowQuery(statuses=(S.PENDING, S.FAILED), queues=("r",))) == [c]
    assert store.find_uuids(WorkflowQuery(updated_since=time.time() + 60)) == []
    assert len(store.find_uuids(WorkflowQuery(updated_since=time.time() - 60))) == 4
    assert store.find_uuids(WorkflowQuery(), limit=2) == [a, b]
    assert store.count_workflows(WorkflowQuery(statuses=(S.FAILED,))) == 3
    assert store.count_workflows(WorkflowQuery(error="nothing like it")) == 0


def test_query_by_uuid_prefix(store: Store) -> None:
    first, second = add(store).uuid, add(store).uuid
    assert store.find_uuids(WorkflowQuery(uuid_prefix=first[:8])) == [first]
    assert store.find_uuids(WorkflowQuery(uuid_prefix=first)) == [first]
    assert store.find_uuids(WorkflowQuery(uuid_prefix=first + "0")) == []
    assert store.find_uuids(WorkflowQuery(uuid_prefix="zz")) == []
    assert set(store.find_uuids(WorkflowQuery(uuid_prefix=""))) == {first, second}


def test_with_history(store: Store) -> None:
    ran = add(store)
    c = claim(store)
    store.save_step(c.lease, step_index=0, state_json="{}", attempt=att(), completed=False)
    never = add(store)
    assert store.with_history([ran.uuid, never.uuid, "missing"]) == {ran.uuid}
    assert store.with_history([]) == set()


def test_retry_and_cancel_in_bulk(store: Store) -> None:
    failed = [fail(store) for _ in range(3)]
    pending = add(store).uuid
    missing = str(uuid_mod.uuid4())
    assert store.retry_workflows([*failed, pending, missing]) == failed
    assert store.find_uuids(WorkflowQuery(statuses=(S.FAILED,))) == []
    running = claim(store)
    after = store.cancel_workflows([*failed, pending, missing])
    assert after[running.workflow.uuid] == S.RUNNING
    assert {u: s for u, s in after.items() if u != running.workflow.uuid} == {
        u: S.CANCELLED for u in [*failed, pending] if u != running.workflow.uuid}
    assert store.cancel_workflows([*failed, pending]) == {}
    with pytest.raises(WorkflowNotFound):
        store.cancel_workflow(missing)
