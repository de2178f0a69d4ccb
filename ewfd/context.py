"""StepContext: what a step function learns about the attempt it is running in."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .model import Workflow
from .progress import ProgressReporter


@dataclass(frozen=True)
class StepContext:
    """Passed as the first argument of every step: ``fn(ctx, state)``.

    ``step_name`` and ``workflow_uuid`` make idempotency keys (a step that ran
    before a crash runs again); ``deadline`` is ``time.monotonic()`` seconds.
    """

    step_name: str
    workflow_uuid: str
    attempt: int
    deadline: float | None
    logger: Any = field(repr=False)
    workflow_name: str = ""
    step_index: int = 0
    queue: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    reporter: ProgressReporter = field(default_factory=ProgressReporter, repr=False,
                                       compare=False)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far this step is: ``fraction`` from 0 to 1, an optional short message.

        Call it as often as you like: it costs a memory write. ``ewfd ctl workers`` and
        ``ewfd ctl show`` show it, and the log gets a ``step.progress`` line, at most once
        a second (the latest value always makes it out). A fraction that is not a number
        from 0 to 1 raises TypeError or ValueError.
        """
        self.reporter.report(fraction, message)

    @cached_property
    def log(self) -> Any:
        """A structlog logger bound to the workflow, step and attempt (bound on first use)."""
        return self.logger.bind(attempt=self.attempt)

    @property
    def idempotency_key(self) -> str:
        """``<workflow uuid>:<step name>``: the same on every attempt of this step."""
        return f"{self.workflow_uuid}:{self.step_name}"

    @classmethod
    def for_step(cls, wf: Workflow, index: int, attempt: int, deadline: float | None,
                 log: Any, reporter: ProgressReporter | None = None) -> StepContext:
        return cls(wf.steps[index].name, wf.uuid, attempt, deadline, log, wf.name, index,
                   wf.queue, dict(wf.metadata), reporter or ProgressReporter())
