"""Plain data: workflows, steps, retry policies, queues and step history."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from . import backoff as backoff_mod
from .backoff import Backoff
from .codec import check_text

State = dict[str, Any]
MAX_WORKERS = 64        # worker processes of one queue


class WorkflowStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED)


@dataclass(frozen=True)
class RetryPolicy:
    """How often a step is tried (``max_attempts`` counts the first try) and how long to wait."""

    max_attempts: int = 1
    backoff: Backoff | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError("RetryPolicy.max_attempts must be an int")
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be >= 1 (it counts the first attempt)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_attempts": self.max_attempts,
            "backoff": None if self.backoff is None else backoff_mod.to_dict(self.backoff),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RetryPolicy:
        b = d.get("backoff")
        return cls(int(d.get("max_attempts", 1)), None if b is None else backoff_mod.from_dict(b))


@dataclass(frozen=True)
class Step:
    """One step of a template: the activity's name, its retry policy and per-attempt timeout."""

    name: str
    retry: RetryPolicy | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("Step.name must be a non-empty string")
        check_text(self.name, "step name")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"Step {self.name}: timeout must be > 0 seconds or None")

    @property
    def max_attempts(self) -> int:
        if self.retry is None or self.retry.backoff is None:
            return 1
        return self.retry.max_attempts

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "retry": None if self.retry is None else self.retry.to_dict(),
            "timeout": self.timeout,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        r = d.get("retry")
        t = d.get("timeout")
        return cls(
            str(d["name"]),
            None if r is None else RetryPolicy.from_dict(r),
            None if t is None else float(t),
        )


BeforeWorkflowHook = Callable[["Workflow"], Any]
AfterWorkflowHook = Callable[["Workflow", BaseException | None], Any]
BeforeStepHook = Callable[["Workflow", Step], Any]
AfterStepHook = Callable[["Workflow", Step, BaseException | None], Any]


@dataclass
class WorkflowTemplate:
    """A blueprint: steps in order, plus hooks (hooks are code: they are never stored)."""

    steps: list[Step]
    before_workflow: list[BeforeWorkflowHook] = field(default_factory=list)
    after_workflow: list[AfterWorkflowHook] = field(default_factory=list)
    before_step: list[BeforeStepHook] = field(default_factory=list)
    after_step: list[AfterStepHook] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.steps = [s if isinstance(s, Step) else Step(str(s)) for s in self.steps]
        if not self.steps:
            raise ValueError("a WorkflowTemplate needs at least one step")

    def steps_json(self) -> str:
        """The steps as stored with a workflow (computed once: a row inserted by SQL takes them
        from its template at every claim)."""
        cached: tuple[list[Step], str] | None = getattr(self, "_steps_json", None)
        if cached is None or cached[0] is not self.steps:
            cached = (self.steps, json.dumps([s.to_dict() for s in self.steps]))
            object.__setattr__(self, "_steps_json", cached)
        return cached[1]


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``, the format of every stored timestamp."""
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    return (f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:"
            f"{ts.second:02d}.{ts.microsecond // 1000:03d}Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True)
class StepProgress:
    """What a running step last reported with ``ctx.progress`` (as stored: rate-limited)."""

    fraction: float
    message: str | None
    step_index: int
    updated_at: datetime


@dataclass
class Workflow:
    """A run of a template. ``current_step`` is the index of the next step to run."""

    uuid: str
    name: str
    status: WorkflowStatus = WorkflowStatus.PENDING
    state: State = field(default_factory=dict)
    current_step: int = 0
    created_at: datetime = field(default_factory=utcnow)
    steps: list[Step] = field(default_factory=list)
    queue: str | None = None
    display_name: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    updated_at: datetime | None = None
    progress: StepProgress | None = None    # a running step's last report, if any

    def check_text(self) -> None:
        """Refuse names and labels that cannot be stored as text (state and metadata are
        JSON: they are stored exactly, whatever their strings hold)."""
        check_text(self.name, "workflow name")
        if self.queue is not None:
            check_text(self.queue, "queue")
        check_text(self.display_name, "display_name")

    def copy(self) -> Workflow:
        return dataclasses.replace(self, state=dict(self.state), metadata=dict(self.metadata),
                                   steps=list(self.steps))


@dataclass(frozen=True)
class WorkflowQuery:
    """Which workflows an operator means (``ewfd ctl`` filters): each field that is set
    narrows the selection, an empty one does not. ``uuid_prefix`` matches the start of the
    uuid, ``updated_since`` is epoch seconds, ``error`` a substring of the error (any case)."""

    uuid_prefix: str | None = None
    statuses: tuple[WorkflowStatus, ...] = ()
    queues: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    updated_since: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Lease:
    """A worker's hold on one workflow. Every write it makes is fenced on ``(job_id, token)``."""

    job_id: int
    token: int
    owner: str
    attempt: int = 0        # failed attempts already made on the current step
    crashes: int = 0        # interruptions of the current step in a row
    steps_json: str | None = None   # set to store the steps of a row inserted by SQL


@dataclass
class Claimed:
    """A claimed workflow as stored: the lease, the workflow, and its raw state text."""

    lease: Lease
    workflow: Workflow
    state_json: str
    steps_known: bool       # False for a row inserted by SQL, whose steps come from the template
    cancel_requested: bool = False
    problem: str | None = None      # the row could not be read as a workflow: reject it


@dataclass(frozen=True)
class Attempt:
    """One row of a workflow's step history."""

    step: str
    step_index: int
    attempt: int
    started_at: datetime
    finished_at: datetime | None
    duration_ms: float | None
    outcome: str            # completed | failed | interrupted
    error: str | None = None
    worker_pid: int | None = None


@dataclass(frozen=True)
class QueueSpec:
    """A queue's settings, persisted in the store so the daemon can start workers for it."""

    name: str
    workers: int = 1
    poll_interval: float = 0.1
    auto_delete: bool = False
    delete_after: float = 0.0
    pop_timeout: float = 0.0
    lease: float = 30.0
    max_crashes: int = 5
    max_tasks_per_worker: int = 0
    max_memory: int = 0
    paused: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a queue needs a name")
        check_text(self.name, "queue name")
        # Types too: a workers of 2.5 or "2" would pass the comparisons below and break the
        # supervisor later, far from whoever set it.
        for key in ("workers", "max_crashes", "max_tasks_per_worker", "max_memory"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"queue {self.name}: {key} must be an integer, got {value!r}")
        for key in ("poll_interval", "delete_after", "pop_timeout", "lease"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    not math.isfinite(value):
                raise ValueError(f"queue {self.name}: {key} must be a number of seconds, "
                                 f"got {value!r}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"queue {self.name}: workers must be >= 1 and <= {MAX_WORKERS}")
        if not 0 < self.poll_interval <= 3600:
            raise ValueError(f"queue {self.name}: poll_interval must be > 0 and <= 1 hour")
        if self.lease < 1:
            raise ValueError(f"queue {self.name}: lease must be >= 1 second")
        if self.max_crashes < 1:
            raise ValueError(f"queue {self.name}: max_crashes must be >= 1")
        for key in ("max_tasks_per_worker", "max_memory", "delete_after", "pop_timeout"):
            if getattr(self, key) < 0:
                raise ValueError(f"queue {self.name}: {key} must be >= 0")
