"""The app of the operator tests (waiting for results, progress, retention): ``opsapp:engine``.

Steps synchronise with the test through files in ``$E2E_DIR``: a gated step writes
``started-<uuid>`` when it begins and waits for ``release-<uuid>``.

``double``  n -> 2n.
``gated``   gate (waits for its release file), then double.
``boom``    fails at once ("card declined"), no retry.
``crunch``  crunch: reports progress 10,001 times in a burst (up to 0.5, "row 10000 of
            20000"), then waits for its release file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ewfd import Engine, Step, StepContext, WorkflowTemplate

POLL = 0.02
GIVE_UP = 60.0     # a step never waits longer than this for its release file


def _dir() -> Path:
    return Path(os.environ.get("E2E_DIR", "."))


def _started(uuid: str) -> None:
    path = _dir() / f"started-{uuid}"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, path)


def _wait_release(uuid: str) -> None:
    deadline = time.monotonic() + GIVE_UP
    while not (_dir() / f"release-{uuid}").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"release-{uuid} never appeared")
        time.sleep(POLL)


def double(ctx: StepContext, state: dict[str, Any]) -> None:
    state["n"] = state.get("n", 1) * 2


def gate(ctx: StepContext, state: dict[str, Any]) -> None:
    _started(ctx.workflow_uuid)
    _wait_release(ctx.workflow_uuid)


def boom(ctx: StepContext, state: dict[str, Any]) -> None:
    raise RuntimeError("card declined")


def crunch(ctx: StepContext, state: dict[str, Any]) -> None:
    for i in range(10_001):
        ctx.progress(i / 20_000, f"row {i} of 20000")
    _started(ctx.workflow_uuid)
    _wait_release(ctx.workflow_uuid)


def register(engine: Engine) -> Engine:
    """Every activity and template of this app, on ``engine`` (the test process uses it too)."""
    for fn in (double, gate, boom, crunch):
        engine.register(fn.__name__, fn)
    engine.register_template("double", WorkflowTemplate(steps=[Step("double")]))
    engine.register_template("gated", WorkflowTemplate(steps=[Step("gate"), Step("double")]))
    engine.register_template("boom", WorkflowTemplate(steps=[Step("boom")]))
    engine.register_template("crunch", WorkflowTemplate(steps=[Step("double"), Step("crunch")]))
    return engine


engine = register(Engine())
