"""An app whose steps print, for the tests of what a step's output is tied to
(``app = "outputapp:engine"``).

``talk``: a before_workflow hook prints; step ``hello`` prints lines to stdout and
stderr, has a child process print, and ends with a partial line (no newline) written
just before it returns; step ``bye`` prints one line. Every line holds the workflow's
uuid and the step that printed it, so a test can check what each line was tied to.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from ewfd import Engine, Step, StepContext, WorkflowTemplate
from ewfd.model import Workflow

engine = Engine()


def announce(wf: Workflow) -> None:
    print(f"hook {wf.uuid} -")


@engine.activity("hello")
def hello(ctx: StepContext, state: dict[str, Any]) -> None:
    for i in range(int(state.get("lines", 3))):
        print(f"line {ctx.workflow_uuid} hello {i}")
    print(f"err {ctx.workflow_uuid} hello", file=sys.stderr)
    subprocess.run(["echo", f"child {ctx.workflow_uuid} hello"], check=True)
    sys.stdout.write(f"tail {ctx.workflow_uuid} hello")   # no newline, and no flush


@engine.activity("bye")
def bye(ctx: StepContext, state: dict[str, Any]) -> None:
    print(f"line {ctx.workflow_uuid} bye")


engine.register_template("talk", WorkflowTemplate(steps=[Step("hello"), Step("bye")],
                                                  before_workflow=[announce]))
