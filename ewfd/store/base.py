"""The Store protocol: everything the engine, workers, supervisor and ctl need from a database.

Every backend (memory, SQLite, later PostgreSQL) implements it and passes the
one contract suite in ``tests/integration/test_store_contract.py``. Methods
taking a :class:`Lease` are *fenced*: they change the workflow only while the
lease's token is still the workflow's token, and raise :class:`LeaseLost`
otherwise, so a worker that was paused past its lease can change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..model import Attempt, Claimed, Lease, QueueSpec, Workflow, WorkflowQuery, WorkflowStatus

DEFAULT_MAX_CRASHES = 5


@dataclass(frozen=True)
class Interrupted:
    """What :meth:`Store.interrupt` did to one workflow whose worker died or lost its lease."""

    uuid: str
    name: str
    queue: str | None
    step: str
    crashes: int
    status: WorkflowStatus      # pending (will run again), failed (max_crashes reached)
    #                             or cancelled (a cancel was requested while it ran)
    error: str | None


@dataclass(frozen=True)
class Resumable:
    """A workflow ``resume_workflows`` may take: pending/running and not queued."""

    uuid: str
    status: WorkflowStatus
    lease_owner: str | None
    lease_expires: float | None


@runtime_checkable
class Store(Protocol):
    # -- lifecycle -----------------------------------------------------------
    def close(self) -> None: ...

    # -- workflows (not fenced: creation, reads, operator actions) -------------
    def create_workflow(self, wf: Workflow, state_json: str) -> Workflow:
        """Insert a new workflow (pending). Its steps are stored with it."""
        ...

    def load_workflow(self, uuid: str, *, typed: bool = True) -> Workflow:
        """The workflow as last saved; raises WorkflowNotFound. ``typed=False`` returns the
        state as plain JSON values (no app classes imported: for tools such as ctl)."""
        ...

    def list_workflows(self, *, status: WorkflowStatus | None = None, queue: str | None = None,
                       name: str | None = None, limit: int | None = None,
                       typed: bool = True) -> list[Workflow]:
        """Newest first."""
        ...

    def delete_workflow(self, uuid: str) -> bool: ...

    def history(self, uuid: str) -> list[Attempt]:
        """The step history of a workflow, oldest first; raises WorkflowNotFound."""
        ...

    def cancel_workflow(self, uuid: str) -> WorkflowStatus | None:
        """Cancel: a pending workflow becomes ``cancelled`` at once, a running one is flagged
        and stops at its next step boundary. Returns the status after the call, or None when
        nothing changed (already finished, or running and already asked to stop). Raises
        WorkflowNotFound."""
        ...

    def retry_workflow(self, uuid: str) -> bool:
        """A failed or cancelled workflow goes back to pending at its current step, with fresh
        attempt and crash counts. False when it is in another status."""
        ...

    def prune(self, *, older_than: float, statuses: Sequence[WorkflowStatus],
              batch: int = 500) -> Iterable[int]:
        """Delete finished workflows (and their history) last updated before the epoch time
        ``older_than``, in short transactions; yields the count deleted by each batch."""
        ...

    def count_prunable(self, *, older_than: float, statuses: Sequence[WorkflowStatus]) -> int: ...

    # -- operator selections and bulk actions (ewfd ctl) --------------------------
    def find_workflows(self, query: WorkflowQuery, *, limit: int | None = None,
                       typed: bool = True) -> list[Workflow]:
        """The workflows ``query`` selects, newest first."""
        ...

    def find_uuids(self, query: WorkflowQuery, *, limit: int | None = None) -> list[str]:
        """The uuids ``query`` selects, oldest first (the order a bulk action goes in)."""
        ...

    def count_workflows(self, query: WorkflowQuery) -> int: ...

    def with_history(self, uuids: Sequence[str]) -> set[str]:
        """Those of ``uuids`` with at least one finished attempt: the rest never ran a step."""
        ...

    def retry_workflows(self, uuids: Sequence[str]) -> list[str]:
        """:meth:`retry_workflow` for many in one transaction; the uuids that changed
        (unknown ones are skipped)."""
        ...

    def cancel_workflows(self, uuids: Sequence[str]) -> dict[str, WorkflowStatus]:
        """:meth:`cancel_workflow` for many in one transaction; uuid -> status after, for
        those that changed (unknown ones are skipped)."""
        ...

    def resumable(self) -> list[Resumable]:
        """Pending and running workflows with no queue, oldest first."""
        ...

    # -- claiming and fenced writes -------------------------------------------
    def claim(self, queue: str, owner: str, lease: float) -> Claimed | None:
        """Take the oldest pending workflow of ``queue`` that is due (not paused queue), stamp
        a lease for ``lease`` seconds and a new fencing token. One short transaction."""
        ...

    def claim_workflow(self, uuid: str, owner: str, lease: float) -> Claimed | None:
        """Take one pending workflow by uuid (used by ``run`` and ``resume_workflows``)."""
        ...

    def save_step(self, lease: Lease, *, step_index: int, state_json: str, attempt: Attempt,
                  completed: bool) -> bool:
        """After a successful step: state, ``current_step = step_index + 1``, the history row
        and (``completed``) the final status, in one transaction. Resets attempt and crash
        counts. Returns True when a cancel was requested meanwhile."""
        ...

    def record_attempt(self, lease: Lease, *, attempt: Attempt) -> bool:
        """A failed attempt that will be retried in place: history row and attempt count.
        Returns True when a cancel was requested meanwhile."""
        ...

    def release(self, lease: Lease, *, status: WorkflowStatus, error: str | None = None,
                attempt: Attempt | None = None, retry_in: float = 0.0) -> WorkflowStatus:
        """End the lease: back to ``pending`` (a shutdown, or a retry wait longer than the poll
        interval, due ``retry_in`` seconds from now on the host clock) or to a final status,
        with an optional history row. A failed attempt's row increments the stored attempt
        count. A workflow whose cancel was requested meanwhile ends ``cancelled`` instead of
        going back to pending (a cancel is honoured at every hand-back). Returns the status
        it now has."""
        ...

    def save_progress(self, lease: Lease, *, step_index: int, fraction: float,
                      message: str | None) -> None:
        """What the running step ``step_index`` reported with ``ctx.progress`` (read back as
        ``Workflow.progress``; cleared at every step boundary and claim). Fenced, and also
        refused (LeaseLost) once that step's outcome was saved. Not a change of the
        workflow: ``updated_at`` stays."""
        ...

    def held_by(self, owner: str) -> list[Claimed]:
        """Running workflows leased to ``owner`` (the supervisor uses it on a worker it killed)."""
        ...

    def cancel_requested(self, lease: Lease) -> bool:
        """True when the workflow was cancelled meanwhile; raises LeaseLost if not ours."""
        ...

    def renew_leases(self, owners: Sequence[str], lease: float) -> int:
        """Push the expiry of every running workflow held by ``owners``; returns rows renewed."""
        ...

    def interrupt(self, *, owner: str | None = None, expired: bool = False,
                  reason: str = "worker died", crash: bool = True) -> list[Interrupted]:
        """Take workflows back from a dead worker (``owner``) or from expired leases
        (``expired``): each gets an ``interrupted`` history row and goes back to pending,
        or ends failed once its queue's ``max_crashes`` is reached, or ends cancelled when
        a cancel was requested while it ran. ``crash=False`` (a worker
        killed by a graceful shutdown running out of time) counts toward nothing. The token
        moves on, so the old owner's writes are fenced off."""
        ...

    def reject_unknown_queues(self) -> list[tuple[str, str]]:
        """Fail pending rows whose queue is not a stored queue (and, where people can write
        rows by hand, any other pending row no worker would take); returns (uuid, error)."""
        ...

    def lease_owners(self) -> list[str]:
        """Distinct owners of running workflows (the supervisor checks them at start)."""
        ...

    # -- templates -------------------------------------------------------------
    def save_template(self, name: str, steps: Sequence[dict[str, Any]]) -> None: ...
    def load_template(self, name: str) -> list[dict[str, Any]]:
        """The stored steps of a template; raises TemplateNotFound."""
        ...

    def load_templates(self) -> dict[str, list[dict[str, Any]]]: ...

    # -- queues ----------------------------------------------------------------
    def save_queue(self, spec: QueueSpec) -> None:
        """Create or update a queue's settings (its paused flag is kept on update)."""
        ...

    def delete_queue(self, name: str) -> None:
        """Raises QueueNotFound."""
        ...

    def load_queue(self, name: str) -> QueueSpec:
        """Raises QueueNotFound."""
        ...

    def load_queues(self) -> list[QueueSpec]: ...
    def set_paused(self, name: str, paused: bool) -> bool:
        """Returns True when the flag changed; raises QueueNotFound."""
        ...

    def queue_stats(self) -> list[dict[str, Any]]:
        """Per queue (stored or seen on a workflow): counts by status, oldest pending age;
        workflows with no queue count under ``queue: None``, listed last."""
        ...

    def queue_activity(self, name: str) -> tuple[int, float | None]:
        """(unfinished workflows, epoch time of the last change) for auto-delete."""
        ...

    # -- wake-up and housekeeping ----------------------------------------------
    def due_in(self, queue: str) -> float | None:
        """Seconds until the earliest pending workflow of the queue is due (<= 0: now), or
        None when there is none. Due times are on the store's host clock (``ewfd.clock``),
        which no wall-clock step moves. None for a paused queue, whatever it holds (as the
        claim: a worker sleeps until then)."""
        ...

    def wait_for_change(self, timeout: float) -> None:
        """Block until the database may have changed (any writer, any process, any other
        thread of this one) since this thread last waited, or ``timeout`` passes. A change
        committed after the caller's last read must end the wait. A backend that cannot
        tell just sleeps."""
        ...

    def maintenance(self) -> None:
        """Occasional housekeeping from one place (the supervisor): e.g. a WAL checkpoint."""
        ...
