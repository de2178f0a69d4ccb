"""Steps that do things to their own process: exit, spawn children, wait on them.

``app = "procapp:engine"``: e2eapp's engine (every workflow of e2eapp) plus these.
Each step that spawns a process appends ``<uuid> <attempt> <pid>`` to
``children.txt`` in ``$E2E_DIR`` before it waits, so a test can check that the
process is gone afterwards.

``argv``       cli: an argparse ``main()`` given an option it does not know (SystemExit 2).
``orphaner``   spawn: ``sleep 300`` from a thread, plus one in a new session of its own,
               then ignores StepTimeout (timeout 1 s, 2 attempts): killed after the grace.
``overrunner`` spawn_and_wait: the same children, then sleeps into its timeout (1 s, 2
               attempts), which interrupts it: the worker lives on.
``spawner``    spawn_and_block: the same children, then waits for its release file.
``leaver``     leave: starts ``sleep 300`` in the background and returns at once.
``shell``      sleep_child: ``sleep <seconds>`` (default 2) as a child, check=True style;
               writes ``started-<uuid>`` once the child runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import threading
import time
from typing import Any

from e2eapp import POLL, _dir, _mark_started, _released, engine, record

from ewfd import RetryPolicy, Step, StepContext, WorkflowTemplate, backoff


def _note_child(ctx: StepContext, pid: int) -> None:
    line = f"{ctx.workflow_uuid} {ctx.attempt} {pid}\n".encode()
    fd = os.open(_dir() / "children.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def cli(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    parser = argparse.ArgumentParser(prog="report")
    parser.add_argument("--day")
    parser.parse_args(["--bad-option"])


def _spawn_children(ctx: StepContext) -> None:
    """A ``sleep 300`` run by subprocess from a thread, and one that left our session."""
    started = threading.Event()

    def run_in_thread() -> None:
        with subprocess.Popen(["sleep", "300"]) as proc:
            _note_child(ctx, proc.pid)
            started.set()
            proc.wait()

    threading.Thread(target=run_in_thread, daemon=True).start()
    started.wait(10)
    escaped = subprocess.Popen(["sleep", "300"], start_new_session=True)
    _note_child(ctx, escaped.pid)


def spawn(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    _spawn_children(ctx)
    _mark_started(f"{ctx.workflow_uuid}-{ctx.attempt}")
    while True:   # ignores StepTimeout: the supervisor kills the worker after the grace
        with contextlib.suppress(BaseException):
            time.sleep(POLL)


def spawn_and_wait(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    _spawn_children(ctx)
    time.sleep(300)   # StepTimeout interrupts this: the attempt fails, the worker lives on


def spawn_and_block(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    _spawn_children(ctx)
    _mark_started(ctx.workflow_uuid)
    while not _released(ctx.workflow_uuid):
        time.sleep(POLL)


def leave(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    proc = subprocess.Popen(["sleep", "300"])   # never waited for: left to the worker's group
    _note_child(ctx, proc.pid)


def sleep_child(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    proc = subprocess.Popen(["sleep", str(state.get("seconds", 2))])
    _note_child(ctx, proc.pid)
    _mark_started(ctx.workflow_uuid)
    code = proc.wait()
    if code:
        raise subprocess.CalledProcessError(code, proc.args)
    state["slept"] = True


for _name, _fn in {"cli": cli, "spawn": spawn, "spawn_and_wait": spawn_and_wait,
                   "spawn_and_block": spawn_and_block,
                   "leave": leave, "sleep_child": sleep_child}.items():
    engine.register(_name, _fn)
engine.register_template("argv", WorkflowTemplate(steps=[Step("cli"), Step("one")]))
engine.register_template("orphaner", WorkflowTemplate(steps=[
    Step("spawn", timeout=1.0, retry=RetryPolicy(max_attempts=2,
                                                 backoff=backoff.constant(0.1)))]))
engine.register_template("overrunner", WorkflowTemplate(steps=[
    Step("spawn_and_wait", timeout=1.0, retry=RetryPolicy(max_attempts=2,
                                                          backoff=backoff.constant(0.1)))]))
engine.register_template("spawner", WorkflowTemplate(steps=[Step("spawn_and_block")]))
engine.register_template("leaver", WorkflowTemplate(steps=[Step("leave"), Step("one")]))
engine.register_template("shell", WorkflowTemplate(steps=[Step("sleep_child")]))
