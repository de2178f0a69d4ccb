"""The app of ``test_text_daemon.py`` (``app = "textapp:engine"``): steps that meet text which is
not valid UTF-8 (a lone surrogate, a file name made of other bytes).

Each step appends ``<uuid> <step>`` to ``$E2E_DIR/effects.txt`` when it runs, so a
test can tell that it ran exactly once.

``greet``     greet: ``state["greeting"] = "Hello, " + state["name"]``; logs ``greet.name``.
``listing``   list: ``state["files"] = sorted(os.listdir(state["dir"]))``.
``complain``  complain: raises an error quoting the first name in ``state["dir"]``.
``chatter``   chatter: prints bytes that are not UTF-8, then a str holding a lone surrogate.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ewfd import Engine, Step, StepContext, WorkflowTemplate


def record(ctx: StepContext) -> None:
    path = Path(os.environ.get("E2E_DIR", ".")) / "effects.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{ctx.workflow_uuid} {ctx.step_name}\n".encode())
    finally:
        os.close(fd)


def greet(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    ctx.log.info("greet.name", name=state["name"])
    state["greeting"] = "Hello, " + state["name"]


def listing(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    state["files"] = sorted(os.listdir(state["dir"]))


def complain(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    name = sorted(os.listdir(state["dir"]))[0]
    raise RuntimeError(f"cannot import {name}: bad header")


def chatter(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    sys.stdout.buffer.write(b"raw caf\xff bytes\n")
    sys.stdout.flush()
    print("text caf\udcff str")
    state["chatted"] = True


engine = Engine()
for _name, _fn in (("greet", greet), ("list", listing), ("complain", complain),
                   ("chatter", chatter)):
    engine.register(_name, _fn)
engine.register_template("greet", WorkflowTemplate(steps=[Step("greet")]))
engine.register_template("listing", WorkflowTemplate(steps=[Step("list")]))
engine.register_template("complain", WorkflowTemplate(steps=[Step("complain")]))
engine.register_template("chatter", WorkflowTemplate(steps=[Step("chatter")]))
