"""The app ``scripts/chaos`` runs under ``ewfd run`` (``app = "chaosapp:engine"``).

Every step execution is recorded in a side-effect log outside the database,
``$CHAOS_DIR/effects.log``, one line per event, each written with a single
``write`` on a file opened ``O_APPEND`` (several workers share the file, and a
``kill -9`` can land anywhere, so a line is either whole or absent)::

    S <uuid> <step> <attempt> <pid> <epoch>             the step began
    E <uuid> <step> <attempt> <pid> <epoch> <outcome>   it ended: ok, raise, timeout, fail_now

Each step also checks that the state it starts from holds the outputs of every
earlier step (a resume that lost saved state fails the workflow loudly), then
sets ``out_<step>`` to ``"<step>:<uuid>"``.

Workflows (every step is retried by policy only where its design needs it):

``plain``    p1, p2, p3.
``flaky``    f1, f2 (raises on attempt 1, succeeds on attempt 2), f3.
``timeout``  t1, t2 (timeout 0.5 s; attempt 1 overruns it, attempt 2 is quick), t3.
``doomed``   d1, d2 (raises ``FailWorkflowNow``), d3 (must never run).
``sleeper``  s1, s2 (sleeps ``state["sleep"]`` seconds, default 3: longer than the
             chaos lease, so the supervisor must renew it), s3.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ewfd import (
    Engine,
    FailWorkflowNow,
    RetryPolicy,
    Step,
    StepContext,
    StepTimeout,
    WorkflowTemplate,
    backoff,
)

TEMPLATES: dict[str, list[str]] = {
    "plain": ["p1", "p2", "p3"],
    "flaky": ["f1", "f2", "f3"],
    "timeout": ["t1", "t2", "t3"],
    "doomed": ["d1", "d2", "d3"],
    "sleeper": ["s1", "s2", "s3"],
}
#: Steps whose first attempt fails by design (each then succeeds on attempt 2).
FAILS_FIRST = {"f2", "t2"}
#: Steps that end their workflow ``failed`` by design, and the steps that must never run.
FAILS_WORKFLOW = {"d2"}
NEVER_RUNS = {"d3"}
RETRY = RetryPolicy(max_attempts=3, backoff=backoff.constant(0.2))
T2_TIMEOUT = 0.5


def effects_path() -> Path:
    return Path(os.environ.get("CHAOS_DIR", ".")) / "effects.log"


def _append(line: str) -> None:
    fd = os.open(effects_path(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _check_inputs(ctx: StepContext, state: dict[str, Any], steps: list[str]) -> None:
    for earlier in steps[: steps.index(ctx.step_name)]:
        if state.get(f"out_{earlier}") != f"{earlier}:{ctx.workflow_uuid}":
            raise FailWorkflowNow(f"state lost: {ctx.step_name} started without out_{earlier}")


def _body(name: str) -> Callable[[StepContext, dict[str, Any]], None]:
    if name in ("f2",):
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            if ctx.attempt == 1:
                raise RuntimeError("flaky: the first attempt fails on purpose")
    elif name == "t2":
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            if ctx.attempt == 1:
                time.sleep(T2_TIMEOUT * 6)   # interrupted by StepTimeout after 0.5 s
    elif name == "d2":
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            raise FailWorkflowNow("doomed: fails its workflow on purpose")
    elif name == "s2":
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            time.sleep(float(state.get("sleep", 3.0)))
    else:
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            pass
    return body


def _activity(name: str, steps: list[str]) -> Callable[[StepContext, dict[str, Any]], None]:
    body = _body(name)

    def run(ctx: StepContext, state: dict[str, Any]) -> None:
        head = f"{ctx.workflow_uuid} {ctx.step_name} {ctx.attempt} {os.getpid()}"
        _append(f"S {head} {time.time():.6f}\n")
        outcome = "raise"
        try:
            _check_inputs(ctx, state, steps)
            body(ctx, state)
            state[f"out_{name}"] = f"{name}:{ctx.workflow_uuid}"
            outcome = "ok"
        except StepTimeout:
            outcome = "timeout"
            raise
        except FailWorkflowNow:
            outcome = "fail_now"
            raise
        finally:
            _append(f"E {head} {time.time():.6f} {outcome}\n")

    run.__name__ = name
    return run


def templates() -> dict[str, WorkflowTemplate]:
    def step(name: str) -> Step:
        if name == "f2":
            return Step(name, retry=RETRY)
        if name == "t2":
            return Step(name, retry=RETRY, timeout=T2_TIMEOUT)
        return Step(name)

    return {wf: WorkflowTemplate(steps=[step(s) for s in steps]) for wf, steps in TEMPLATES.items()}


def register(engine: Engine) -> Engine:
    """Register every activity and template of this app on ``engine``."""
    for steps in TEMPLATES.values():
        for name in steps:
            engine.register(name, _activity(name, steps))
    for name, template in templates().items():
        engine.register_template(name, template)
    return engine


engine = register(Engine())
