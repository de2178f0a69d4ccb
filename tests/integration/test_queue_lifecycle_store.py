"""The store's side of a queue's life, on every backend: where its settings come from
(``origin``, ``defined_in``), and draining (``close-queue --drain``): no new work is
taken, what was there runs, and the queue is closed once nothing is left."""

from __future__ import annotations

import json
import uuid

import pytest

from ewfd.errors import QueueNotFound
from ewfd.model import QueueSpec, Step, Workflow, WorkflowStatus
from ewfd.store.base import Store

OWNER = "host-a:1234:99"


def add(store: Store, queue: str = "q") -> str:
    wf = Workflow(uuid=str(uuid.uuid4()), name="greet", steps=[Step("a")], queue=queue)
    store.create_workflow(wf, json.dumps({}))
    return wf.uuid


def test_origin_and_where_defined_are_stored(store: Store) -> None:
    store.save_queue(QueueSpec("q", workers=2, origin="config", defined_in="/etc/ewfd.toml"))
    store.save_queue(QueueSpec("r"))
    q, r = store.load_queues()
    assert (q.origin, q.defined_in, q.workers) == ("config", "/etc/ewfd.toml", 2)
    assert (r.origin, r.defined_in) == ("api", None)
    store.save_queue(QueueSpec("r", workers=3, origin="ctl"))
    assert store.load_queue("r").origin == "ctl"


def test_draining_takes_no_new_work_but_runs_what_was_there(store: Store) -> None:
    store.save_queue(QueueSpec("q"))
    before = [add(store), add(store)]
    assert store.set_draining("q", True) is True
    assert store.set_draining("q", True) is False      # already: the line drawn stays
    after = add(store)
    assert store.load_queue("q").draining
    first = store.claim("q", OWNER, 60)
    assert first is not None and first.workflow.uuid == before[0]
    second = store.claim("q", OWNER, 60)
    assert second is not None and second.workflow.uuid == before[1]
    assert store.claim("q", OWNER, 60) is None          # the new one is not taken
    assert store.due_in("q") is None                    # nor waited for
    rejected = store.reject_new_on_draining()
    assert [u for u, _ in rejected] == [after]
    assert "queue 'q' is closing" in rejected[0][1]
    wf = store.load_workflow(after)
    assert wf.status == WorkflowStatus.FAILED and wf.error == rejected[0][1]
    assert store.reject_new_on_draining() == []


def test_a_drained_queue_is_closed_only_when_nothing_is_left(store: Store) -> None:
    store.save_queue(QueueSpec("q"))
    store.save_queue(QueueSpec("other"))
    add(store)
    assert store.close_drained("q") is False            # not draining: never closed
    store.set_draining("q", True)
    claimed = store.claim("q", OWNER, 60)
    assert claimed is not None
    assert store.close_drained("q") is False            # still running
    store.release(claimed.lease, status=WorkflowStatus.COMPLETED)
    assert store.close_drained("q") is True
    with pytest.raises(QueueNotFound):
        store.load_queue("q")
    assert [q.name for q in store.load_queues()] == ["other"]


def test_draining_ends_when_asked_and_survives_a_settings_update(store: Store) -> None:
    store.save_queue(QueueSpec("q"))
    store.set_draining("q", True)
    store.save_queue(QueueSpec("q", workers=4))
    assert store.load_queue("q").draining               # save_queue keeps it, like paused
    assert store.set_draining("q", False) is True
    assert not store.load_queue("q").draining
    add(store)
    assert store.claim("q", OWNER, 60) is not None
    with pytest.raises(QueueNotFound):
        store.set_draining("nope", True)



def test_a_paused_queue_has_nothing_due(store: Store) -> None:
    """Workers wait on ``due_in``: a paused queue's pending work must not read as due, or
    its idle workers would claim (and fail to) in a loop at full CPU."""
    store.save_queue(QueueSpec("q"))
    add(store)
    assert store.due_in("q") is not None and store.due_in("q") <= 0  # type: ignore[operator]
    store.set_paused("q", True)
    assert store.claim("q", OWNER, 60) is None
    assert store.due_in("q") is None
    store.set_paused("q", False)
    assert store.due_in("q") is not None
