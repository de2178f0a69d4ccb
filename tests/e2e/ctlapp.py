"""The app the ``ewfd ctl`` end-to-end tests run: steps gated by marker files.

``gate`` blocks in its first step until the file named by ``state["marker"]``
exists (a running workflow to cancel); ``needs_marker`` fails at once unless
it exists (a failed workflow to retry once the cause is fixed); ``quick`` just
runs.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ewfd import Engine, Step, StepContext, WorkflowTemplate

engine = Engine()
WAIT_LIMIT = 30.0


@engine.activity("wait_marker")
def wait_marker(ctx: StepContext, state: dict[str, Any]) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not os.path.exists(state["marker"]):
        if time.monotonic() > deadline:
            raise RuntimeError(f"marker {state['marker']} never appeared")
        time.sleep(0.05)
    state["waited"] = True


@engine.activity("need_marker")
def need_marker(ctx: StepContext, state: dict[str, Any]) -> None:
    if not os.path.exists(state["marker"]):
        raise RuntimeError(f"marker {state['marker']} is missing")
    state["found"] = True


@engine.activity("finish")
def finish(ctx: StepContext, state: dict[str, Any]) -> None:
    state["finished"] = True


engine.register_template("gate", WorkflowTemplate(steps=[Step("wait_marker"), Step("finish")]))
engine.register_template("needs_marker",
                         WorkflowTemplate(steps=[Step("need_marker"), Step("finish")]))
engine.register_template("quick", WorkflowTemplate(steps=[Step("finish")]))
