"""The app ``scripts/chaos`` runs under ``ewfd run`` (``app = "chaosapp:engine"``).

Every step execution is recorded in a side-effect log outside the database,
``$CHAOS_DIR/effects.log``, one line per event, each written with a single
``write`` on a file opened ``O_APPEND`` (several workers share the file, and a
``kill -9`` can land anywhere, so a line is either whole or absent)::

    S <uuid> <step> <attempt> <pid> <time>             the step began
    E <uuid> <step> <attempt> <pid> <time> <outcome>   it ended: ok, raise, timeout, fail_now
    C <uuid> <step> <attempt> <pid> <child> <how>      it started process <child>: "group"
                                                       (in the worker's group), "session"
                                                       (start_new_session=True)

Times are on the chaos clock (:func:`now`): the boot clock plus an anchor the chaos
script passes in ``$CHAOS_ANCHOR``, so they stay comparable with the script's own
while the daemon's wall clock is stepped (``clockshift.c``).

Each step also checks that the state it starts from holds the outputs of every
earlier step (a resume that lost saved state fails the workflow loudly), then
sets ``out_<step>`` to ``"<step>:<uuid>"``.

Workflows (every step is retried by policy only where its design needs it):

``plain``      p1, p2, p3.
``flaky``      f1, f2 (raises on attempt 1, succeeds on attempt 2), f3.
``timeout``    t1, t2 (timeout 0.5 s; attempt 1 overruns it, attempt 2 is quick), t3.
``doomed``     d1, d2 (raises ``FailWorkflowNow``), d3 (must never run).
``sleeper``    s1, s2 (sleeps ``state["sleep"]`` seconds, default 3: longer than the
               chaos lease, so the supervisor must renew it), s3.
``exiter``     e1, e2 (an argparse ``main()`` given a bad option on attempt 1:
               ``SystemExit`` is a failed attempt, retried), e3 (``sys.exit`` with a
               message, no retry: the workflow fails with it, never "worker died").
``spawner``    c1 (timeout 1 s; attempt 1 starts ``sleep 300`` from a thread and in a
               session of its own, then overruns: its children are killed with the
               attempt), c2 (leaves a ``sleep 300`` behind: it dies with its worker), c3.
``hanger``     h1, h2 (timeout 0.5 s; attempt 1 starts the same children and ignores
               ``StepTimeout``: the supervisor kills its worker after the grace), h3.
``asyncer``    a1, a2 (``async def``, timeout 0.5 s; attempt 1 blocks its event loop
               with ``time.sleep``: it must fail, never complete), a3.
``texty``      u1 (greets ``state["name"]``, text holding lone surrogates, and logs it),
               u2 (lists a directory holding a file name that is not UTF-8), u3 (attempt
               1 fails with an error quoting that name).
``fanout``     o1 (timeout 1.5 s, up to 5 attempts: sleeps ``state["prep"]`` on attempt
               1, then enqueues the ``plain`` child ``<uuid>-child`` with ``engine.run``:
               a write that may wait on a lock held past the timeout), o2.
``lateretry``  l1 (attempt 1 runs 1 s, then fails into a 30 s retry wait); the chaos
               script cancels it: it must end ``cancelled`` promptly, never run again.
``clockretry`` r1 (attempt 1 fails into a 3 s retry wait, handed back to the queue, that
               the chaos script steps the wall clock across), r2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import threading
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
    "exiter": ["e1", "e2", "e3"],
    "spawner": ["c1", "c2", "c3"],
    "hanger": ["h1", "h2", "h3"],
    "asyncer": ["a1", "a2", "a3"],
    "texty": ["u1", "u2", "u3"],
    "fanout": ["o1", "o2"],
    "lateretry": ["l1"],
    "clockretry": ["r1", "r2"],
}
#: Steps whose first attempt fails by design (each then succeeds on attempt 2).
FAILS_FIRST = {"f2", "t2", "e2", "c1", "h2", "a2", "u3", "r1"}
#: The most attempts a step may take (1 when not listed): o1's writes may meet a held lock.
MAX_ATTEMPTS = {**{s: 2 for s in FAILS_FIRST}, "o1": 5}
#: Steps that end their workflow ``failed`` by design, and the steps that must never run.
FAILS_WORKFLOW = {"d2", "e3"}
NEVER_RUNS = {"d3"}
RETRY = RetryPolicy(max_attempts=3, backoff=backoff.constant(0.2))
T2_TIMEOUT = 0.5
C1_TIMEOUT = 1.0
H2_TIMEOUT = 0.5
A2_TIMEOUT = 0.5
O1_TIMEOUT = 1.5
L1_BACKOFF = 30.0
R1_BACKOFF = 3.0
EXITER_ERROR = "exiter: gives up on purpose"
#: A process a step starts runs this long unless something kills it.
CHILD_SECONDS = "300"


def _anchor() -> float:
    text = os.environ.get("CHAOS_ANCHOR")
    if text:
        return float(text)
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


ANCHOR = _anchor()


def now() -> float:
    """The chaos clock: epoch seconds that no step of the wall clock moves."""
    return ANCHOR + time.clock_gettime(time.CLOCK_BOOTTIME)


def chaos_dir() -> Path:
    return Path(os.environ.get("CHAOS_DIR", "."))


def effects_path() -> Path:
    return chaos_dir() / "effects.log"


def text_name(cid: str) -> str:
    """The ``name`` a ``texty`` workflow carries: lone surrogates, high and low."""
    return f"caf\ud83d-{cid}-\udcff"


def file_name(cid: str) -> str:
    """The name ``u2`` reads back for the file it made of other bytes than UTF-8."""
    return os.fsdecode(b"caf\xff-" + cid.encode())


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


# -- what steps do to their own process ----------------------------------------------------------
def _note_child(ctx: StepContext, pid: int, how: str) -> None:
    _append(f"C {ctx.workflow_uuid} {ctx.step_name} {ctx.attempt} {os.getpid()} {pid} {how}\n")


def _spawn_children(ctx: StepContext) -> None:
    """``sleep 300`` run by subprocess from a thread, and one in a session of its own."""
    started = threading.Event()

    def run_in_thread() -> None:
        with contextlib.suppress(Exception), subprocess.Popen(["sleep", CHILD_SECONDS]) as proc:
            _note_child(ctx, proc.pid, "group")
            started.set()
            proc.wait()
        started.set()

    threading.Thread(target=run_in_thread, daemon=True).start()
    started.wait(10)
    escaped = subprocess.Popen(["sleep", CHILD_SECONDS], start_new_session=True)
    _note_child(ctx, escaped.pid, "session")


def _argparse_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="report")
    parser.add_argument("--day")
    parser.parse_args(argv)


def _body(name: str) -> Callable[[StepContext, dict[str, Any]], None]:
    if name in ("f2", "r1"):
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            if ctx.attempt == 1:
                raise RuntimeError(f"{name}: the first attempt fails on purpose")
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
    elif name == "e2":
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            if ctx.attempt == 1:
                _argparse_main(["--bad-option"])   # SystemExit(2)
    elif name == "e3":
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            sys.exit(EXITER_ERROR)
    elif name == "c1":
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            if ctx.attempt == 1:
                _spawn_children(ctx)
                time.sleep(C1_TIMEOUT * 5)   # interrupted: the attempt fails, children die
            else:
                subprocess.run(["sleep", "0.05"], check=True)
    elif name == "c2":
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            proc = subprocess.Popen(["sleep", CHILD_SECONDS])   # never waited for
            _note_child(ctx, proc.pid, "group")
    elif name == "h2":
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            if ctx.attempt == 1:
                _spawn_children(ctx)
                end = time.monotonic() + 60
                while time.monotonic() < end:   # ignores StepTimeout: killed after the grace
                    with contextlib.suppress(BaseException):
                        time.sleep(0.02)
    elif name == "u1":
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            ctx.log.info("chaos.text", name=state["name"])
            state["greeting"] = "Hello, " + state["name"]
    elif name == "u2":
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            where = chaos_dir() / "names" / ctx.workflow_uuid
            where.mkdir(parents=True, exist_ok=True)
            made = os.fsencode(where) + b"/" + os.fsencode(file_name(state["cid"]))
            os.close(os.open(made, os.O_WRONLY | os.O_CREAT, 0o644))
            state["files"] = sorted(os.listdir(where))
    elif name == "u3":
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            if ctx.attempt == 1:
                raise RuntimeError(f"cannot import {state['files'][0]}: bad header "
                                   f"({state['name']})")
    elif name == "o1":
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            if ctx.attempt == 1:
                time.sleep(float(state.get("prep", 0.0)))
            child = engine.new_workflow("plain", queue=state["q"],
                                        uuid=f"{ctx.workflow_uuid}-child",
                                        state={"cid": f"{state['cid']}-child"})
            engine.run(child)   # stored once: a retry finds it stored and stores nothing
    elif name == "l1":
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            time.sleep(1.0)
            raise RuntimeError("lateretry: fails into a long retry wait")
    else:
        def body(ctx: StepContext, state: dict[str, Any]) -> None:
            pass
    return body


def _activity(name: str, steps: list[str]) -> Callable[[StepContext, dict[str, Any]], Any]:
    body = _body(name)

    def begin(ctx: StepContext) -> str:
        head = f"{ctx.workflow_uuid} {ctx.step_name} {ctx.attempt} {os.getpid()}"
        _append(f"S {head} {now():.6f}\n")
        return head

    def end(head: str, outcome: str) -> None:
        _append(f"E {head} {now():.6f} {outcome}\n")

    if name == "a2":
        async def run_async(ctx: StepContext, state: dict[str, Any]) -> None:
            head = begin(ctx)
            outcome = "raise"
            try:
                _check_inputs(ctx, state, steps)
                if ctx.attempt == 1:
                    time.sleep(A2_TIMEOUT * 3)   # blocks the event loop past the timeout
                state[f"out_{name}"] = f"{name}:{ctx.workflow_uuid}"
                outcome = "ok"
            except StepTimeout:
                outcome = "timeout"
                raise
            finally:
                end(head, outcome)

        run_async.__name__ = name
        return run_async

    def run(ctx: StepContext, state: dict[str, Any]) -> None:
        head = begin(ctx)
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
            end(head, outcome)

    run.__name__ = name
    return run


def templates() -> dict[str, WorkflowTemplate]:
    timeouts = {"t2": T2_TIMEOUT, "c1": C1_TIMEOUT, "h2": H2_TIMEOUT, "a2": A2_TIMEOUT,
                "o1": O1_TIMEOUT}
    retries = {"o1": RetryPolicy(max_attempts=MAX_ATTEMPTS["o1"], backoff=backoff.constant(0.2)),
               "l1": RetryPolicy(max_attempts=2, backoff=backoff.constant(L1_BACKOFF)),
               "r1": RetryPolicy(max_attempts=2, backoff=backoff.constant(R1_BACKOFF))}

    def step(name: str) -> Step:
        retry = retries.get(name, RETRY if name in FAILS_FIRST else None)
        return Step(name, retry=retry, timeout=timeouts.get(name))

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
