"""The app of the signal and log-line tests (``app = "signalapp:engine"``).

Steps talk to the test through files in ``$E2E_DIR``, as in ``e2eapp``: a step
that must be caught at a precise moment writes ``started-<uuid>`` (holding its
pid) and waits for ``release-<uuid>`` (or ``release-all``).

Workflows:

``fanout``   spawn: once released, enqueues ``child`` (uuid ``<parent>-child``) with
             ``engine.run``, under a 2 s timeout and no retry.
``child``    noop.
``blocking`` block: waits for its release file, then sets ``blocked``.
``loud``     shout: fails (no retry) with a ~90 KB error text.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ewfd import Engine, Step, StepContext, WorkflowTemplate

POLL = 0.01
FANOUT_TIMEOUT = 2.0
LOUD_SIZE = 90_000


def _dir() -> Path:
    return Path(os.environ.get("E2E_DIR", "."))


def _started(uuid: str) -> None:
    path = _dir() / f"started-{uuid}"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, path)


def _wait_release(uuid: str) -> None:
    while not ((_dir() / f"release-{uuid}").exists() or (_dir() / "release-all").exists()):
        time.sleep(POLL)


def spawn(ctx: StepContext, state: dict[str, Any]) -> None:
    _started(ctx.workflow_uuid)
    _wait_release(ctx.workflow_uuid)
    engine.run(engine.new_workflow("child", queue="default", uuid=f"{ctx.workflow_uuid}-child"))
    state["spawned"] = True


def noop(ctx: StepContext, state: dict[str, Any]) -> None:
    state["ran"] = True


def block(ctx: StepContext, state: dict[str, Any]) -> None:
    _started(ctx.workflow_uuid)
    _wait_release(ctx.workflow_uuid)
    state["blocked"] = True


def shout(ctx: StepContext, state: dict[str, Any]) -> None:
    head = f"{ctx.workflow_uuid} begins "
    raise ValueError(head + "é" * ((LOUD_SIZE - len(head)) // 2) + " ends")


engine = Engine()
for _name, _fn in (("spawn", spawn), ("noop", noop), ("block", block), ("shout", shout)):
    engine.register(_name, _fn)
engine.register_template("fanout", WorkflowTemplate(steps=[Step("spawn", timeout=FANOUT_TIMEOUT)]))
engine.register_template("child", WorkflowTemplate(steps=[Step("noop")]))
engine.register_template("blocking", WorkflowTemplate(steps=[Step("block")]))
engine.register_template("loud", WorkflowTemplate(steps=[Step("shout")]))
