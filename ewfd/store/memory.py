"""MemoryStore: the whole Store protocol in process memory; nothing is persisted.

It exists for tests and for embedded use that wants no database: the engine
uses it when it is given no store. It behaves exactly like :class:`SQLiteStore`
(same exceptions, history rows, fencing and token rules; the one contract suite
in ``tests/integration/test_store_contract.py`` runs against both), so code
tested on it behaves the same on SQLite. State, steps, metadata and templates
are kept as JSON text, as SQLite keeps them: a value that would not survive the
database fails here too, and every load returns fresh objects.

One re-entrant lock guards everything; every write is also a critical section
(:mod:`ewfd.critical`), so a signal handler's exception never leaves a row half
changed. :meth:`MemoryStore.wait_for_change`
blocks on a condition notified by every write that changed something; a
thread's own writes do not wake it, just as a SQLite connection's own commits
leave its ``data_version`` alone.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .. import clock, codec, critical
from ..errors import LeaseLost, QueueNotFound, StoreError, TemplateNotFound, WorkflowNotFound
from ..model import (
    Attempt,
    Claimed,
    Lease,
    QueueSpec,
    Step,
    StepProgress,
    Workflow,
    WorkflowQuery,
    WorkflowStatus,
    iso,
    parse_iso,
    utcnow,
)
from .base import DEFAULT_MAX_CRASHES, Interrupted, Resumable, closing_error

_PENDING, _RUNNING = WorkflowStatus.PENDING, WorkflowStatus.RUNNING


def _now_iso() -> str:
    return iso(utcnow())


@dataclass
class _Row:
    """One workflow, field for field the ``jobs`` row SQLiteStore keeps."""

    id: int
    uuid: str
    queue: str | None
    workflow: str
    state: str
    display_name: str
    metadata: str
    current_step: int
    created_at: str
    updated_at: str
    steps: str | None
    status: WorkflowStatus = _PENDING
    error: str | None = None
    not_before: float = 0.0
    retry_wait: float | None = None
    lease_owner: str | None = None
    lease_expires: float | None = None
    token: int = 0
    attempt: int = 0
    crashes: int = 0
    cancel_requested: bool = False
    step_started_at: str | None = None
    progress: StepProgress | None = None


def _steps(text: str | None) -> list[Step]:
    return [Step.from_dict(d) for d in json.loads(text)] if text else []


def _stored(a: Attempt) -> Attempt:
    """The attempt as it reads back from SQLite: timestamps at millisecond precision."""
    return dataclasses.replace(
        a, started_at=parse_iso(iso(a.started_at)),
        finished_at=parse_iso(iso(a.finished_at)) if a.finished_at else None)


def _owner_pid(owner: str | None) -> int | None:
    try:
        return int((owner or "").split(":")[1])
    except (IndexError, ValueError):
        return None


class MemoryStore:
    """An in-process store; thread-safe, gone when the process ends."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._local = threading.local()     # .seen: the write counter this thread has seen
        self._version = 0
        self._next_id = 1                   # never reused, so a stale lease cannot match
        self._drain_after: dict[str, int] = {}   # draining queue -> the last id it takes
        self._jobs: dict[int, _Row] = {}    # by id, hence in insertion order
        self._by_uuid: dict[str, int] = {}
        self._history: dict[int, list[Attempt]] = {}
        self._templates: dict[str, str] = {}
        self._queues: dict[str, tuple[QueueSpec, str]] = {}   # spec, updated_at
        self.clock = clock.local()

    def close(self) -> None:
        """Nothing to release."""

    def _changed(self) -> None:
        """Call with the lock held after a write that changed something."""
        caught_up = getattr(self._local, "seen", 0) == self._version
        self._version += 1
        if caught_up:
            self._local.seen = self._version
        self._cond.notify_all()

    def _row(self, uuid: str) -> _Row:
        job_id = self._by_uuid.get(uuid)
        if job_id is None:
            raise WorkflowNotFound(f"no workflow {uuid}")
        return self._jobs[job_id]

    def _workflow(self, row: _Row, typed: bool) -> Workflow:
        try:
            state = codec.decode_state(row.state) if typed else codec.decode_raw(row.state)
        except Exception:
            state = {}
        return Workflow(
            uuid=row.uuid, name=row.workflow, status=row.status,
            state=state if isinstance(state, dict) else {}, current_step=row.current_step,
            created_at=parse_iso(row.created_at), steps=_steps(row.steps), queue=row.queue,
            display_name=row.display_name, error=row.error, metadata=json.loads(row.metadata),
            updated_at=parse_iso(row.updated_at),
            progress=row.progress if row.status == _RUNNING else None)

    @staticmethod
    def _claimed(row: _Row, owner: str) -> Claimed:
        wf = Workflow(uuid=row.uuid, name=row.workflow, status=_RUNNING,
                      current_step=row.current_step, created_at=parse_iso(row.created_at),
                      queue=row.queue, display_name=row.display_name, error=None,
                      updated_at=parse_iso(row.updated_at), steps=_steps(row.steps),
                      metadata={str(k): str(v) for k, v in json.loads(row.metadata).items()})
        lease = Lease(row.id, row.token, owner, row.attempt, row.crashes)
        return Claimed(lease, wf, row.state, row.steps is not None, row.cancel_requested)

    # -- workflows -----------------------------------------------------------------
    def create_workflow(self, wf: Workflow, state_json: str) -> Workflow:
        now = _now_iso()
        steps = json.dumps([s.to_dict() for s in wf.steps]) if wf.steps else None
        metadata = json.dumps(wf.metadata)
        with critical.section(), self._lock:
            if wf.uuid in self._by_uuid:
                raise StoreError(f"memory: UNIQUE constraint failed: workflow {wf.uuid} exists")
            row = _Row(self._next_id, wf.uuid, wf.queue, wf.name, state_json, wf.display_name,
                       metadata, wf.current_step, iso(wf.created_at), now, steps)
            self._next_id += 1
            self._jobs[row.id] = row
            self._by_uuid[row.uuid] = row.id
            self._history[row.id] = []
            self._changed()
        wf.status = _PENDING
        wf.updated_at = parse_iso(now)
        return wf

    def load_workflow(self, uuid: str, *, typed: bool = True) -> Workflow:
        with self._lock:
            return self._workflow(self._row(uuid), typed)

    def list_workflows(self, *, status: WorkflowStatus | None = None, queue: str | None = None,
                       name: str | None = None, limit: int | None = None,
                       typed: bool = True) -> list[Workflow]:
        with self._lock:
            rows = [r for r in reversed(self._jobs.values())
                    if status in (None, r.status) and queue in (None, r.queue)
                    and name in (None, r.workflow)]
            if limit is not None and int(limit) >= 0:      # SQL: a negative LIMIT is no limit
                rows = rows[:int(limit)]
            return [self._workflow(r, typed) for r in rows]

    def delete_workflow(self, uuid: str) -> bool:
        with critical.section(), self._lock:
            job_id = self._by_uuid.pop(uuid, None)
            if job_id is None:
                return False
            del self._jobs[job_id], self._history[job_id]
            self._changed()
            return True

    def history(self, uuid: str) -> list[Attempt]:
        with self._lock:
            return list(self._history[self._row(uuid).id])

    def cancel_workflow(self, uuid: str) -> WorkflowStatus | None:
        with critical.section(), self._lock:
            row = self._row(uuid)
            if row.status == _PENDING:
                row.status, row.error, row.lease_owner, row.lease_expires = (
                    WorkflowStatus.CANCELLED, "cancelled", None, None)
                row.token += 1
            elif row.status == _RUNNING and not row.cancel_requested:
                row.cancel_requested = True
            else:
                return None
            row.updated_at = _now_iso()
            self._changed()
            return row.status

    def retry_workflow(self, uuid: str) -> bool:
        with critical.section(), self._lock:
            row = self._row(uuid)
            if row.status not in (WorkflowStatus.FAILED, WorkflowStatus.CANCELLED):
                return False
            row.status, row.error, row.attempt, row.crashes = _PENDING, None, 0, 0
            row.cancel_requested, row.not_before, row.lease_owner, row.lease_expires = (
                False, 0.0, None, None)
            row.retry_wait = None
            row.updated_at = _now_iso()
            self._changed()
            return True

    # -- operator selections and bulk actions -----------------------------------------------
    @staticmethod
    def _selects(query: WorkflowQuery) -> Callable[[_Row], bool]:
        since = (iso(datetime.fromtimestamp(query.updated_since, UTC))
                 if query.updated_since is not None else None)
        needle = query.error.lower() if query.error is not None else None

        def match(r: _Row) -> bool:
            return ((query.uuid_prefix is None or r.uuid.startswith(query.uuid_prefix))
                    and (not query.statuses or r.status in query.statuses)
                    and (not query.queues or r.queue in query.queues)
                    and (not query.names or r.workflow in query.names)
                    and (since is None or r.updated_at >= since)
                    and (needle is None or (r.error is not None and needle in r.error.lower())))

        return match

    def _found(self, query: WorkflowQuery, limit: int | None, newest: bool) -> list[_Row]:
        match = self._selects(query)
        rows = [r for r in self._jobs.values() if match(r)]
        if newest:
            rows.reverse()
        return rows if limit is None else rows[:max(int(limit), 0)]

    def find_workflows(self, query: WorkflowQuery, *, limit: int | None = None,
                       typed: bool = True) -> list[Workflow]:
        with self._lock:
            return [self._workflow(r, typed) for r in self._found(query, limit, True)]

    def find_uuids(self, query: WorkflowQuery, *, limit: int | None = None) -> list[str]:
        with self._lock:
            return [r.uuid for r in self._found(query, limit, False)]

    def count_workflows(self, query: WorkflowQuery) -> int:
        with self._lock:
            return len(self._found(query, None, False))

    def with_history(self, uuids: Sequence[str]) -> set[str]:
        with self._lock:
            return {u for u in uuids
                    if u in self._by_uuid and self._history[self._by_uuid[u]]}

    def retry_workflows(self, uuids: Sequence[str]) -> list[str]:
        with critical.section(), self._lock:
            return [u for u in uuids if u in self._by_uuid and self.retry_workflow(u)]

    def cancel_workflows(self, uuids: Sequence[str]) -> dict[str, WorkflowStatus]:
        with critical.section(), self._lock:
            after = {u: self.cancel_workflow(u) for u in uuids if u in self._by_uuid}
            return {u: s for u, s in after.items() if s is not None}

    @staticmethod
    def _prunable(older_than: float,
                  statuses: Sequence[WorkflowStatus]) -> Callable[[_Row], bool]:
        finished = {WorkflowStatus(s) for s in statuses if WorkflowStatus(s).finished}
        if not finished:
            raise ValueError("prune only deletes finished workflows (completed/failed/cancelled)")
        cutoff = iso(datetime.fromtimestamp(older_than, UTC))
        return lambda r: r.status in finished and r.updated_at < cutoff

    def count_prunable(self, *, older_than: float, statuses: Sequence[WorkflowStatus]) -> int:
        match = self._prunable(older_than, statuses)
        with self._lock:
            return sum(1 for r in self._jobs.values() if match(r))

    def prune(self, *, older_than: float, statuses: Sequence[WorkflowStatus],
              batch: int = 500) -> Iterator[int]:
        match = self._prunable(older_than, statuses)    # a bad status raises here, not later

        def batches() -> Iterator[int]:
            while True:
                with critical.section(), self._lock:
                    ids = [r.id for r in self._jobs.values() if match(r)]
                    ids = ids[:int(batch)] if int(batch) >= 0 else ids
                    for job_id in ids:
                        del self._by_uuid[self._jobs.pop(job_id).uuid], self._history[job_id]
                    if ids:
                        self._changed()
                if not ids:
                    return
                yield len(ids)

        return batches()

    def resumable(self) -> list[Resumable]:
        with self._lock:
            return [Resumable(r.uuid, r.status, r.lease_owner, r.lease_expires)
                    for r in self._jobs.values()
                    if r.queue is None and r.status in (_PENDING, _RUNNING)]

    # -- claiming and fenced writes ----------------------------------------------------
    def _take(self, row: _Row, owner: str, lease: float) -> Claimed:
        row.status, row.lease_owner = _RUNNING, owner
        row.lease_expires = self.clock.now() + lease
        row.token += 1
        row.step_started_at = row.updated_at = _now_iso()
        row.progress = None
        self._changed()
        return self._claimed(row, owner)

    @staticmethod
    def _due(row: _Row, now: float) -> bool:
        """Its time has come, or it lies further ahead than its own wait plus a slack
        (SQLiteStore._DUE, clock.DUE_SLACK)."""
        return row.not_before <= now or (
            row.retry_wait is not None
            and row.not_before > now + row.retry_wait + clock.DUE_SLACK)

    def claim(self, queue: str, owner: str, lease: float) -> Claimed | None:
        now = self.clock.now()
        with critical.section(), self._lock:
            spec = self._queues.get(queue)
            if spec is not None and spec[0].paused:
                return None
            for row in self._jobs.values():
                if row.status == _PENDING and row.queue == queue and self._due(row, now) \
                        and not self._is_new_on_draining(row):
                    return self._take(row, owner, lease)
            return None

    def _is_new_on_draining(self, row: _Row) -> bool:
        last = self._drain_after.get(row.queue) if row.queue is not None else None
        return last is not None and row.id > last

    def claim_workflow(self, uuid: str, owner: str, lease: float) -> Claimed | None:
        with critical.section(), self._lock:
            job_id = self._by_uuid.get(uuid)
            row = None if job_id is None else self._jobs[job_id]
            if row is None or row.status != _PENDING:
                return None
            return self._take(row, owner, lease)

    def _fenced(self, lease: Lease) -> _Row:
        """The leased row, or LeaseLost; call with the lock held, before changing anything."""
        row = self._jobs.get(lease.job_id)
        if row is None or row.token != lease.token or row.status != _RUNNING:
            raise LeaseLost(f"lease on workflow #{lease.job_id} (token {lease.token}) was lost")
        if row.steps is None:
            row.steps = lease.steps_json
        row.updated_at = _now_iso()
        row.progress = None
        return row

    def save_step(self, lease: Lease, *, step_index: int, state_json: str, attempt: Attempt,
                  completed: bool) -> bool:
        stored = _stored(attempt)
        with critical.section(), self._lock:
            row = self._fenced(lease)
            row.state, row.current_step, row.attempt, row.crashes = (
                state_json, step_index + 1, 0, 0)
            if completed:
                row.status, row.error = WorkflowStatus.COMPLETED, None
                row.lease_owner = row.lease_expires = None
            else:
                row.step_started_at = row.updated_at
            self._history[row.id].append(stored)
            self._changed()
            return row.cancel_requested

    def record_attempt(self, lease: Lease, *, attempt: Attempt) -> bool:
        stored = _stored(attempt)
        with critical.section(), self._lock:
            row = self._fenced(lease)
            row.attempt = attempt.attempt
            self._history[row.id].append(stored)
            self._changed()
            return row.cancel_requested

    def release(self, lease: Lease, *, status: WorkflowStatus, error: str | None = None,
                attempt: Attempt | None = None, retry_in: float = 0.0) -> WorkflowStatus:
        stored = None if attempt is None else _stored(attempt)
        with critical.section(), self._lock:
            row = self._fenced(lease)
            ending = WorkflowStatus(status)
            if status == _PENDING and row.cancel_requested:   # a cancel requested meanwhile
                ending, error = WorkflowStatus.CANCELLED, "cancelled"
            row.status, row.error = ending, error
            row.retry_wait = retry_in if retry_in > 0 else None
            row.not_before = self.clock.now() + retry_in if row.retry_wait else 0.0
            row.lease_owner = row.lease_expires = None
            if attempt is not None and attempt.outcome == "failed":
                row.attempt = attempt.attempt
            if status == _PENDING:   # as asked: the token moves on, as SQLiteStore's does
                row.token += 1
            if stored is not None:
                self._history[row.id].append(stored)
            self._changed()
            return row.status

    def save_progress(self, lease: Lease, *, step_index: int, fraction: float,
                      message: str | None) -> None:
        with critical.section(), self._lock:
            row = self._jobs.get(lease.job_id)
            if (row is None or row.token != lease.token or row.status != _RUNNING
                    or row.current_step != step_index):
                raise LeaseLost(f"lease on workflow #{lease.job_id} (token {lease.token}) "
                                f"is no longer at step {step_index}")
            row.progress = StepProgress(fraction, message, step_index,
                                        parse_iso(_now_iso()))
            self._changed()

    def held_by(self, owner: str) -> list[Claimed]:
        with self._lock:
            return [self._claimed(r, owner) for r in self._jobs.values()
                    if r.status == _RUNNING and r.lease_owner == owner]

    def cancel_requested(self, lease: Lease) -> bool:
        with self._lock:
            row = self._jobs.get(lease.job_id)
            if row is None or row.token != lease.token or row.status != _RUNNING:
                raise LeaseLost(f"lease on workflow #{lease.job_id} (token {lease.token}) was lost")
            return row.cancel_requested

    def renew_leases(self, owners: Sequence[str], lease: float) -> int:
        expires, n = self.clock.now() + lease, 0
        with critical.section(), self._lock:
            for r in self._jobs.values():
                if r.status == _RUNNING and r.lease_owner in owners:
                    r.lease_expires, n = expires, n + 1
            if n:
                self._changed()
            return n

    def _step_name(self, row: _Row) -> str:
        steps = row.steps if row.steps is not None else self._templates.get(row.workflow)
        try:
            return str(json.loads(steps or "[]")[row.current_step]["name"])
        except (ValueError, IndexError, KeyError, TypeError):
            return f"#{row.current_step}"

    def interrupt(self, *, owner: str | None = None, expired: bool = False,
                  reason: str = "worker died", crash: bool = True) -> list[Interrupted]:
        if owner is None and not expired:
            raise ValueError("interrupt needs an owner or expired=True")
        t, now = self.clock.now(), utcnow()
        out = []
        with critical.section(), self._lock:
            for r in self._jobs.values():
                if r.status != _RUNNING:
                    continue
                if owner is not None and r.lease_owner != owner:
                    continue
                if owner is None and (r.lease_expires is None or r.lease_expires >= t):
                    continue
                step, crashes = self._step_name(r), r.crashes + int(crash)
                spec = self._queues.get(r.queue) if r.queue is not None else None
                limit = spec[0].max_crashes if spec is not None else DEFAULT_MAX_CRASHES
                started = parse_iso(r.step_started_at) if r.step_started_at else now
                self._history[r.id].append(_stored(Attempt(
                    step, r.current_step, r.attempt + 1, started, now,
                    (now - started).total_seconds() * 1000, "interrupted", reason,
                    _owner_pid(r.lease_owner))))
                if r.cancel_requested:   # it was to stop at its next step boundary: now
                    r.status, r.error = WorkflowStatus.CANCELLED, "cancelled"
                elif crash and crashes >= limit:
                    r.status = WorkflowStatus.FAILED
                    r.error = f"step {step}: worker died {crashes} times (last: {reason})"
                else:
                    r.status, r.error = _PENDING, None
                r.crashes, r.lease_owner, r.lease_expires = crashes, None, None
                r.token += 1
                r.updated_at = iso(now)
                out.append(Interrupted(r.uuid, r.workflow, r.queue, step, crashes, r.status,
                                       r.error))
            if out:
                self._changed()
        return out

    def _fail_pending(self, why: Callable[[_Row], str | None]) -> list[tuple[str, str]]:
        """Fail every pending row ``why`` gives a reason for, in one write; (uuid, error)."""
        out = []
        with critical.section(), self._lock:
            for r in self._jobs.values():
                error = why(r) if r.status == _PENDING else None
                if error is not None:
                    r.status, r.error, r.updated_at = WorkflowStatus.FAILED, error, _now_iso()
                    r.token += 1
                    out.append((r.uuid, error))
            if out:
                self._changed()
        return out

    def reject_unknown_queues(self) -> list[tuple[str, str]]:
        return self._fail_pending(
            lambda r: f"unknown queue {r.queue!r}: no configured or created queue has that name"
            if r.queue is not None and r.queue not in self._queues else None)

    def lease_owners(self) -> list[str]:
        with self._lock:
            return list(dict.fromkeys(r.lease_owner for r in self._jobs.values()
                                      if r.status == _RUNNING and r.lease_owner is not None))

    # -- templates ------------------------------------------------------------------------
    def save_template(self, name: str, steps: Sequence[dict[str, Any]]) -> None:
        text = json.dumps(list(steps))
        with critical.section(), self._lock:
            if self._templates.get(name) != text:
                self._templates[name] = text
                self._changed()

    def load_template(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            text = self._templates.get(name)
        if text is None:
            raise TemplateNotFound(f"no template {name!r} in memory")
        return list(json.loads(text))

    def load_templates(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {n: json.loads(self._templates[n]) for n in sorted(self._templates)}

    # -- queues -----------------------------------------------------------------------------
    def save_queue(self, spec: QueueSpec) -> None:
        with critical.section(), self._lock:
            old = self._queues.get(spec.name)
            spec = dataclasses.replace(spec, paused=old[0].paused if old else spec.paused,
                                       draining=spec.name in self._drain_after)
            self._queues[spec.name] = (spec, _now_iso())
            self._changed()

    def delete_queue(self, name: str) -> None:
        with critical.section(), self._lock:
            if self._queues.pop(name, None) is None:
                raise QueueNotFound(f"no queue {name!r}")
            self._drain_after.pop(name, None)
            self._changed()

    def set_draining(self, name: str, draining: bool) -> bool:
        with critical.section(), self._lock:
            if name not in self._queues:
                raise QueueNotFound(f"no queue {name!r}")
            spec = self._queues[name][0]
            if spec.draining == draining:
                return False
            if draining:
                self._drain_after[name] = self._next_id - 1
            else:
                del self._drain_after[name]
            self._queues[name] = (dataclasses.replace(spec, draining=draining), _now_iso())
            self._changed()
            return True

    def reject_new_on_draining(self) -> list[tuple[str, str]]:
        return self._fail_pending(
            lambda r: closing_error(str(r.queue)) if self._is_new_on_draining(r) else None)

    def close_drained(self, name: str) -> bool:
        with critical.section(), self._lock:
            if name not in self._drain_after or any(
                    r.queue == name and r.status in (_PENDING, _RUNNING)
                    for r in self._jobs.values()):
                return False
            self.delete_queue(name)
            return True

    def load_queue(self, name: str) -> QueueSpec:
        with self._lock:
            if name not in self._queues:
                raise QueueNotFound(f"no queue {name!r}")
            return self._queues[name][0]

    def load_queues(self) -> list[QueueSpec]:
        with self._lock:
            return [self._queues[n][0] for n in sorted(self._queues)]

    def set_paused(self, name: str, paused: bool) -> bool:
        with critical.section(), self._lock:
            if name not in self._queues:
                raise QueueNotFound(f"no queue {name!r}")
            spec = self._queues[name][0]
            self._queues[name] = (dataclasses.replace(spec, paused=paused), _now_iso())
            self._changed()
            return spec.paused != paused

    def queue_stats(self) -> list[dict[str, Any]]:
        now = utcnow()
        stats: dict[str | None, dict[str, Any]] = {}
        with self._lock:
            for spec, _ in self._queues.values():
                stats[spec.name] = {"queue": spec.name, "workers": spec.workers,
                                    "paused": spec.paused}
            oldest: dict[str | None, str] = {}
            for r in self._jobs.values():
                entry = stats.setdefault(r.queue, {"queue": r.queue, "workers": 0,
                                                   "paused": False})
                entry[str(r.status)] = entry.get(str(r.status), 0) + 1
                if r.status == _PENDING and r.created_at < oldest.get(r.queue, "\uffff"):
                    oldest[r.queue] = r.created_at
        out = []
        for name in sorted(stats, key=lambda n: (n is None, n or "")):
            entry = stats[name]
            for s in WorkflowStatus:
                entry.setdefault(str(s), 0)
            entry["oldest_pending_age_s"] = (
                (now - parse_iso(oldest[name])).total_seconds() if name in oldest else None)
            out.append(entry)
        return out

    def queue_activity(self, name: str) -> tuple[int, float | None]:
        with self._lock:
            rows = [r for r in self._jobs.values() if r.queue == name]
            open_ = sum(1 for r in rows if r.status in (_PENDING, _RUNNING))
            stamps = [r.updated_at for r in rows]
            if name in self._queues:
                stamps.append(self._queues[name][1])
        return open_, (parse_iso(max(stamps)).timestamp() if stamps else None)

    # -- wake-up and housekeeping -------------------------------------------------------
    def due_in(self, queue: str) -> float | None:
        now = self.clock.now()
        with self._lock:
            spec = self._queues.get(queue)
            if spec is not None and spec[0].paused:   # nothing it could claim is due
                return None
            due = [now if self._due(r, now) else r.not_before for r in self._jobs.values()
                   if r.status == _PENDING and r.queue == queue
                   and not self._is_new_on_draining(r)]
        return float(min(due)) - now if due else None

    @property
    def wakes_on_change(self) -> bool:
        """True: :meth:`wait_for_change` ends on the write itself, so workers need no poll."""
        return True

    def wait_for_change(self, timeout: float) -> None:
        """Return when another thread changed something since this thread last looked, or
        after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = getattr(self._local, "seen", 0)
            while self._version == seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._local.seen = self._version

    def maintenance(self) -> None:
        """Nothing to do."""
