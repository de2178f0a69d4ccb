"""The app the end-to-end tests run under ``ewfd run`` (``app = "e2eapp:engine"``).

Steps report what they do through files in ``$E2E_DIR`` (the test's tmp dir), so
a test can count executions and synchronise with a step without sleeping:

- ``effects.txt``: one line ``<uuid> <step> <pid> <attempt>`` per step execution,
  appended with a single ``O_APPEND`` write (several workers share the file).
- ``started-<uuid>``: written (atomically, holding the pid) by a blocking step
  when it begins; the step then waits until ``release-<uuid>`` or ``release-all``
  exists, so a test can kill, stop or signal a worker mid-step deterministically.

Workflows:

``three``     steps one, two, three; each sets ``out_<step>``.
``blocking``  one, block (waits for its release file), three.
``fenced``    hold: the first execution blocks until released, a re-run does not;
              either sets ``by`` to its pid.
``exiter``    one, die (prints a partial line, then ``os._exit(1)`` every time).
``stubborn``  ignore (ignores StepTimeout; timeout 0.5 s, 2 attempts).
``printer``   chatty (prints to stdout and stderr).
``mute``      mute (closes its stdout and stderr, then blocks like ``block``).
``slow``      nap (sleeps ``state["seconds"]``, default 1 s).
``sleepy``    nap with a 0.5 s timeout (it lets StepTimeout interrupt it).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from ewfd import Engine, RetryPolicy, Step, StepContext, WorkflowTemplate, backoff

POLL = 0.02


def _dir() -> Path:
    return Path(os.environ.get("E2E_DIR", "."))


def record(ctx: StepContext) -> None:
    line = f"{ctx.workflow_uuid} {ctx.step_name} {os.getpid()} {ctx.attempt}\n".encode()
    fd = os.open(_dir() / "effects.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _mark_started(uuid: str) -> None:
    path = _dir() / f"started-{uuid}"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, path)


def _released(uuid: str) -> bool:
    return (_dir() / f"release-{uuid}").exists() or (_dir() / "release-all").exists()


def _output(ctx: StepContext, state: dict[str, Any]) -> None:
    state[f"out_{ctx.step_name}"] = f"{ctx.step_name}({state.get('n')})"


def one(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    _output(ctx, state)


two = three = one


def block(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    _mark_started(ctx.workflow_uuid)
    while not _released(ctx.workflow_uuid):
        time.sleep(POLL)
    _output(ctx, state)


def hold(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    if not (_dir() / f"started-{ctx.workflow_uuid}").exists():   # the first execution
        _mark_started(ctx.workflow_uuid)
        while not _released(ctx.workflow_uuid):
            time.sleep(POLL)
    state["by"] = os.getpid()


def die(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    sys.stdout.write(f"last words of {ctx.workflow_uuid}")   # no newline: a partial line
    sys.stdout.flush()
    os._exit(1)


def ignore(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    while True:   # a step that swallows StepTimeout (a BaseException) and keeps going
        with contextlib.suppress(BaseException):
            time.sleep(POLL)


def chatty(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    print(f"to stdout from {ctx.workflow_uuid}")
    print(f"to stderr from {ctx.workflow_uuid}", file=sys.stderr)
    print('{"not": "a log line"} but it looks like one')
    state["printed"] = True


def mute(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    os.close(1)   # the supervisor's end of the output pipe now reads EOF while we live on
    os.close(2)
    _mark_started(ctx.workflow_uuid)
    while not _released(ctx.workflow_uuid):
        time.sleep(POLL)


def nap(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    time.sleep(float(state.get("seconds", 1.0)))
    state["slept"] = True


def flaky(ctx: StepContext, state: dict[str, Any]) -> None:
    """Fails its first attempt, succeeds on the next."""
    record(ctx)
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    state["flaky"] = ctx.attempt


ACTIVITIES = {"one": one, "two": two, "three": three, "block": block, "hold": hold,
              "die": die, "ignore": ignore, "chatty": chatty, "mute": mute,
              "nap": nap, "flaky": flaky}


def templates() -> dict[str, WorkflowTemplate]:
    return {
        "three": WorkflowTemplate(steps=[Step("one"), Step("two"), Step("three")]),
        "blocking": WorkflowTemplate(steps=[Step("one"), Step("block"), Step("three")]),
        "fenced": WorkflowTemplate(steps=[Step("hold")]),
        "exiter": WorkflowTemplate(steps=[Step("one"), Step("die")]),
        "stubborn": WorkflowTemplate(steps=[
            Step("ignore", timeout=0.5,
                 retry=RetryPolicy(max_attempts=2, backoff=backoff.constant(0.1)))]),
        "printer": WorkflowTemplate(steps=[Step("chatty")]),
        "mute": WorkflowTemplate(steps=[Step("mute")]),
        "slow": WorkflowTemplate(steps=[Step("nap")]),
        "sleepy": WorkflowTemplate(steps=[Step("nap", timeout=0.5)]),
        "patient": WorkflowTemplate(steps=[
            Step("flaky", retry=RetryPolicy(max_attempts=2, backoff=backoff.constant(2.0)))]),
    }


def register(engine: Engine) -> Engine:
    """Register every activity and template of this app on ``engine``."""
    for name, fn in ACTIVITIES.items():
        engine.register(name, fn)
    for name, template in templates().items():
        engine.register_template(name, template)
    return engine


engine = register(Engine())

if os.environ.get("E2E_PRINT_AT_IMPORT"):   # an app that chats while it loads
    print("e2eapp: imported")
