"""The e2e app (``e2eapp``) plus the workflows of the time, lease and cancel tests.

``app = "timeapp:engine"``. Steps report through files in ``$E2E_DIR`` as e2eapp's do.

``late_failure``  gate: waits for its release file, then fails; retried after 30 s.
``async_block``   an ``async def`` step that blocks its loop (time.sleep 3 s; timeout 1 s).
``retry4``        flaky: the first attempt fails, the next runs 4 s later (handed back).
``hold_lease``    hold: the first execution blocks until released, a re-run does not.
"""

from __future__ import annotations

import time
from typing import Any

from e2eapp import _mark_started, _released, hold, record, register

from ewfd import Engine, RetryPolicy, Step, StepContext, WorkflowTemplate, backoff


def gate(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    _mark_started(ctx.workflow_uuid)
    while not _released(ctx.workflow_uuid):
        time.sleep(0.02)
    raise RuntimeError("failed after its release")


async def async_block(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    time.sleep(3)   # the fault under test: blocking code inside an async step
    state["done"] = True


def flaky(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    state["attempts"] = ctx.attempt


engine = register(Engine())
engine.register("gate", gate)
engine.register("async_block", async_block)
engine.register("flaky4", flaky)
engine.register_template("late_failure", WorkflowTemplate(steps=[
    Step("gate", retry=RetryPolicy(max_attempts=3, backoff=backoff.constant(30.0)))]))
engine.register_template("async_block", WorkflowTemplate(steps=[
    Step("async_block", timeout=1.0)]))
engine.register_template("retry4", WorkflowTemplate(steps=[
    Step("flaky4", retry=RetryPolicy(max_attempts=2, backoff=backoff.constant(4.0)))]))
engine.register_template("hold_lease", WorkflowTemplate(steps=[Step("hold")]))
__all__ = ["engine", "hold"]
