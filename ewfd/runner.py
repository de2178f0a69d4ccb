"""Running one claimed workflow: attempts, retries, timeouts, hooks and fenced saves.

Used by ``Engine.run`` in-process and by daemon workers alike, so the
semantics of CONTRACT section 3 live in one place. Every write goes through
the lease; a :class:`LeaseLost` ends the run at once, having changed nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from . import backoff, codec, interruptions, timeouts
from .context import StepContext
from .errors import (
    DatabaseLost,
    FailWorkflowNow,
    LeaseLost,
    StateError,
    StepTimeout,
    StoreError,
)
from .model import Attempt, Claimed, Lease, Step, Workflow, WorkflowStatus, WorkflowTemplate, utcnow
from .progress import ProgressReporter, Publish
from .store.base import Store

T = TypeVar("T")
CANCEL_POLL = 0.25     # how often a backoff wait checks for a cancel request


class Registry(Protocol):
    """What the runner needs from an engine (kept as a protocol: the engine imports us)."""

    @property
    def activities(self) -> Mapping[str, Callable[..., Any]]: ...
    @property
    def templates(self) -> Mapping[str, WorkflowTemplate]: ...
    @property
    def max_state_size(self) -> int: ...


@dataclass
class Outcome:
    """How a run ended. ``workflow.status`` is pending when it was handed back (shutdown,
    long retry wait), or a final status; ``error`` is the failing step's exception."""

    workflow: Workflow
    error: BaseException | None = None
    rejected: bool = False


def fails_now(exc: BaseException | None) -> bool:
    """True when FailWorkflowNow is anywhere in the exception's cause/context chain."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, FailWorkflowNow):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def error_text(exc: BaseException) -> str:
    """The exception's text, always writable (see codec); a ``SystemExit(2)`` or a bare
    ``GeneratorExit`` also says which it was, since its text alone ("2", "") says nothing."""
    text = codec.safe_text(str(exc))
    if isinstance(exc, Exception | StepTimeout):
        return text if text else type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def next_delay(step: Step, failed: int) -> float:
    """Seconds to wait after the ``failed``-th failed attempt of ``step``, or backoff.STOP.

    The policy is a prototype: a fresh copy is advanced past the earlier failures, so a
    workflow resumed by another worker continues the same sequence.
    """
    policy = step.retry.backoff if step.retry is not None else None
    if policy is None or failed >= step.max_attempts:
        return backoff.STOP
    delays = backoff.fresh(policy)
    for _ in range(failed - 1):
        delays.next_backoff()
    return delays.next_backoff()


def record_killed(registry: Registry, store: Store, claimed: Claimed, why: str, pid: int,
                  log: Any) -> WorkflowStatus:
    """A worker was killed for overrunning a step's timeout: a failed attempt, retried by policy."""
    wf, lease = claimed.workflow, claimed.lease
    steps = wf.steps or list(getattr(registry.templates.get(wf.name), "steps", []))
    if not 0 <= wf.current_step < len(steps):
        store.interrupt(owner=lease.owner, reason=why)
        return WorkflowStatus.PENDING
    step = steps[wf.current_step]
    failed = lease.attempt + 1
    text = f"timed out after {step.timeout or 0:g}s and {why}"
    now = utcnow()
    row = Attempt(step.name, wf.current_step, failed, now, now, None, "failed", text, pid)
    keys = {"workflow_uuid": wf.uuid, "workflow": wf.name, "queue": wf.queue, "step": step.name,
            "attempt": failed}
    log.warning("step.failed", error=text, **keys)
    delay = next_delay(step, failed)
    if delay < 0:
        store.release(lease, status=WorkflowStatus.FAILED, error=f"step {step.name}: {text}",
                      attempt=row)
        log.error("workflow.failed", error=f"step {step.name}: {text}", **keys)
        return WorkflowStatus.FAILED
    log.info("step.retrying", retry_in=delay, **keys)
    status = store.release(lease, status=WorkflowStatus.PENDING, attempt=row, retry_in=delay)
    if status == WorkflowStatus.CANCELLED:   # cancelled while the step ran
        log.info("workflow.cancelled", **keys)
    return status


class Run:
    """One execution of a claimed workflow by one process."""

    def __init__(self, registry: Registry, store: Store, claimed: Claimed, log: Any, *,
                 stop: threading.Event | None = None, requeue_after: float | None = None,
                 on_step: Callable[[Workflow, int, float | None], None] | None = None,
                 on_progress: Publish | None = None) -> None:
        self.registry = registry
        self.store = store
        self.claimed = claimed
        self.lease: Lease = claimed.lease
        self.wf = claimed.workflow
        self.stop = stop or threading.Event()
        self.requeue_after = requeue_after
        self.on_step = on_step
        self.on_progress = on_progress
        self.log = log.bind(workflow_uuid=self.wf.uuid, workflow=self.wf.name, queue=self.wf.queue)
        self.pid = os.getpid()

    # -- persistence that outlives a full disk or a locked database -------------------------
    def _persist(self, write: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Retry a fenced write through StoreError (disk full, locked) until it lands.

        The write is fenced, so repeating it is safe; LeaseLost ends the retries. A stop
        request gives up: the lease then lapses and the step runs again (at least once).
        """
        delay = 0.05
        while True:
            try:
                return write(*args, **kwargs)
            except DatabaseLost:   # no retry brings the file back
                raise
            except StoreError as exc:
                self.log.error("store.error", error=str(exc), retry_in=round(delay, 3))
                if backoff.wait(delay, self.stop):
                    raise
                delay = min(delay * 2, 5.0)

    # -- hooks ----------------------------------------------------------------------------------
    def _hooks(self, kind: str, hooks: list[Any], *args: Any, raise_errors: bool = False) -> None:
        for hook in hooks:
            name = getattr(hook, "__qualname__", repr(hook))
            try:
                hook(*args)
            except BaseException as exc:
                if not interruptions.is_step_failure(exc):
                    raise
                self.log.warning("hook.failed", hook=kind, function=name, error=error_text(exc))
                if raise_errors:
                    raise
            else:
                self.log.debug("hook.completed", hook=kind, function=name)

    # -- the run -----------------------------------------------------------------------------
    def _reject(self, problem: str) -> Outcome:
        problem = codec.safe_text(problem)
        self.log.error("job.rejected", error=problem)
        self._persist(self.store.release, self.lease, status=WorkflowStatus.FAILED, error=problem)
        self.wf.status, self.wf.error = WorkflowStatus.FAILED, problem
        return Outcome(self.wf, rejected=True)

    def _validate(self) -> WorkflowTemplate | str:
        if self.claimed.problem is not None:
            return f"invalid row: {self.claimed.problem}"
        tmpl = self.registry.templates.get(self.wf.name)
        if tmpl is None:
            return f"unknown workflow {self.wf.name!r}: no template of that name is registered"
        if not self.claimed.steps_known:
            self.wf.steps = list(tmpl.steps)
            self.lease = replace(self.lease, steps_json=tmpl.steps_json())
        missing = [s.name for s in self.wf.steps if s.name not in self.registry.activities]
        if missing:
            return f"workflow {self.wf.name!r}: activity {missing[0]!r} is not registered"
        limit = self.registry.max_state_size
        if limit and len(self.claimed.state_json.encode()) > limit:
            return f"state is over the {limit} byte limit"
        try:
            self.wf.state = codec.decode_state(self.claimed.state_json)
        except StateError as exc:
            return str(exc)
        if not self.wf.steps:
            return "invalid row: steps: the workflow has no steps"
        # A row claimed is never finished: current_step must name a step still to run (a
        # workflow that ran its last step was saved completed, and is never claimed again).
        if not 0 <= self.wf.current_step < len(self.wf.steps):
            return (f"invalid row: current_step {self.wf.current_step}: expected the index of "
                    f"a step still to run, 0 to {len(self.wf.steps) - 1}")
        return tmpl

    def execute(self) -> Outcome:
        try:
            checked = self._validate()
        except BaseException as exc:   # whatever an outside program put in the row: reject it
            if not interruptions.is_step_failure(exc):   # (a state type's code may run here)
                raise
            checked = f"invalid row: {error_text(exc)}"
        if isinstance(checked, str):
            return self._reject(checked)
        tmpl = checked
        if self.claimed.cancel_requested:
            outcome = self._cancelled()
            self._end(tmpl, outcome, time.monotonic())
            return outcome
        self._hooks("before_workflow", tmpl.before_workflow, self.wf)
        self.log.info("workflow.started", current_step=self.wf.current_step,
                      steps=len(self.wf.steps))
        started = time.monotonic()
        saved = self.claimed.state_json
        failed_attempts = self.lease.attempt
        while self.wf.current_step < len(self.wf.steps):
            index = self.wf.current_step
            step = self.wf.steps[index]
            result = self._run_step(tmpl, index, step, saved, failed_attempts)
            if isinstance(result, Outcome):
                if result.workflow.status.finished:
                    self._end(tmpl, result, started)
                return result
            saved, failed_attempts = result, 0
        self.wf.status = WorkflowStatus.COMPLETED
        outcome = Outcome(self.wf)
        self._end(tmpl, outcome, started)
        return outcome

    def _end(self, tmpl: WorkflowTemplate, outcome: Outcome, started: float) -> None:
        duration = round((time.monotonic() - started) * 1000, 3)
        status = outcome.workflow.status
        if status == WorkflowStatus.COMPLETED:
            self.log.info("workflow.completed", duration_ms=duration)
        elif status == WorkflowStatus.CANCELLED:
            self.log.info("workflow.cancelled", duration_ms=duration)
        else:
            self.log.error("workflow.failed", duration_ms=duration, error=outcome.workflow.error)
        self._hooks("after_workflow", tmpl.after_workflow, self.wf, outcome.error)

    def _hand_back(self, attempt: Attempt | None = None, retry_in: float = 0.0) -> Outcome:
        """Back to pending (a shutdown, a long retry wait), or cancelled if that was asked
        for meanwhile: the store decides in the same transaction, so no cancel waits."""
        status = self._persist(self.store.release, self.lease, status=WorkflowStatus.PENDING,
                               attempt=attempt, retry_in=retry_in)
        self.wf.status = status
        if status == WorkflowStatus.CANCELLED:
            self.wf.error = "cancelled"
        return Outcome(self.wf)

    def _run_step(self, tmpl: WorkflowTemplate, index: int, step: Step, saved: str,
                  failed_attempts: int) -> str | Outcome:
        """Attempt one step until it succeeds (returns the saved state) or the run ends."""
        attempt_no = failed_attempts
        log = self.log.bind(step=step.name)
        while True:
            attempt_no += 1
            if self.stop.is_set():
                return self._hand_back()
            deadline = time.monotonic() + step.timeout if step.timeout else None
            if self.on_step is not None:
                self.on_step(self.wf, index, deadline)
            state = codec.decode_state(saved)   # every attempt starts from the saved state
            self.wf.state = state
            reporter = self._reporter(log.bind(attempt=attempt_no), index)
            ctx = StepContext.for_step(self.wf, index, attempt_no, deadline, log, reporter)
            log.info("step.started", attempt=attempt_no)
            began, t0 = utcnow(), time.monotonic()
            error: BaseException | None = None
            encoded = ""
            try:
                self._hooks("before_step", tmpl.before_step, self.wf, step, raise_errors=True)
                timeouts.call(self.registry.activities[step.name], (ctx, state), step.timeout)
                encoded = codec.encode_state(state, self.registry.max_state_size)
            except BaseException as exc:   # SystemExit and the like too: the step's failure
                # In a process the step forked, what it raised is that process's own end.
                if self._forked() or not interruptions.is_step_failure(exc):
                    raise
                error = exc
            else:
                if self._forked():
                    raise SystemExit(0)
            finally:
                reporter.close()    # no report may land after the outcome below
            if self.on_step is not None and deadline is not None:
                self.on_step(self.wf, index, None)   # the save may wait on a busy disk: no kill
            duration = round((time.monotonic() - t0) * 1000, 3)
            if error is None:
                last = index == len(self.wf.steps) - 1
                row = Attempt(step.name, index, attempt_no, began, utcnow(), duration,
                              "completed", None, self.pid)
                cancel = self._persist(self.store.save_step, self.lease, step_index=index,
                                       state_json=encoded, attempt=row, completed=last)
                self.wf.current_step = index + 1
                log.info("step.completed", attempt=attempt_no, duration_ms=duration)
                self._hooks("after_step", tmpl.after_step, self.wf, step, None)
                if cancel and not last:
                    return self._cancelled()
                return encoded
            self._hooks("after_step", tmpl.after_step, self.wf, step, error)
            self.wf.state = codec.decode_state(saved)   # the failed attempt's changes are gone
            text = error_text(error)
            row = Attempt(step.name, index, attempt_no, began, utcnow(), duration, "failed",
                          text, self.pid)
            log.warning("step.failed", attempt=attempt_no, duration_ms=duration, error=text)
            delay = backoff.STOP if fails_now(error) else next_delay(step, attempt_no)
            if delay < 0:
                return self._fail(step, row, error)
            log.info("step.retrying", attempt=attempt_no, retry_in=delay)
            if self.requeue_after is not None and delay > self.requeue_after:
                return self._hand_back(row, delay)
            if self._persist(self.store.record_attempt, self.lease, attempt=row):
                return self._cancelled()
            if self._wait(delay):
                return self._cancelled()
            if self.stop.is_set():
                return self._hand_back()

    def _reporter(self, log: Any, index: int) -> ProgressReporter:
        """``ctx.progress`` of one attempt: the slot on every call (``on_progress``), the
        workflow row and a ``step.progress`` line at the rate limit."""
        lease = self.lease

        def publish(fraction: float, message: str | None) -> None:
            try:
                self.store.save_progress(lease, step_index=index, fraction=fraction,
                                         message=message)
            except LeaseLost:
                return      # the step's outcome write will find that out and say so
            except StoreError as exc:
                log.warning("step.progress_failed", error=str(exc))
            log.info("step.progress", fraction=round(fraction, 4), message=message)

        return ProgressReporter(publish=publish, on_change=self.on_progress)

    def _forked(self) -> bool:
        """True in a process the step forked (``os.fork()``, a helper ending with
        ``sys.exit``): it is not the attempt. What it raises propagates as plain Python
        would propagate it, and returning into ewfd ends it as ``sys.exit(0)``: it never
        records, retries or continues the workflow (its store is the parent's, and the
        next steps must not run a second time)."""
        return os.getpid() != self.pid

    def _fail(self, step: Step, row: Attempt, error: BaseException) -> Outcome:
        message = f"step {step.name}: {error_text(error)}"
        self._persist(self.store.release, self.lease, status=WorkflowStatus.FAILED,
                      error=message, attempt=row)
        self.wf.status, self.wf.error = WorkflowStatus.FAILED, message
        return Outcome(self.wf, error)

    def _cancelled(self) -> Outcome:
        self._persist(self.store.release, self.lease, status=WorkflowStatus.CANCELLED,
                      error="cancelled")
        self.wf.status, self.wf.error = WorkflowStatus.CANCELLED, "cancelled"
        return Outcome(self.wf)

    def _wait(self, delay: float) -> bool:
        """Sleep out a backoff, interruptibly; True when the workflow was cancelled meanwhile."""
        end = time.monotonic() + delay
        while not self.stop.is_set():
            remaining = end - time.monotonic()
            if remaining <= 0:
                return False
            if backoff.wait(min(remaining, CANCEL_POLL), self.stop):
                return False
            if self.store.cancel_requested(self.lease):
                return True
        return False


def execute(registry: Registry, store: Store, claimed: Claimed, log: Any, **kwargs: Any) -> Outcome:
    """Run a claimed workflow to its end or until it is handed back; LeaseLost propagates."""
    try:
        with interruptions.sigint_traced():
            return Run(registry, store, claimed, log, **kwargs).execute()
    except LeaseLost:
        log.warning("lease.lost", workflow_uuid=claimed.workflow.uuid,
                    workflow=claimed.workflow.name, queue=claimed.workflow.queue)
        raise
