"""Whatever a step raises is a failed attempt of that step, never the end of its process.

``SystemExit`` (an argparse ``main()`` given a bad option), ``KeyboardInterrupt``
raised by code, ``GeneratorExit``, a coroutine's own ``CancelledError``: each
fails the attempt with its text, in sync and async steps, in hooks, in
``engine.run`` (main thread and background) and in the in-process ``Worker``.
An exception a signal handler raised inside the step (Ctrl-C in the embedding
program, a program's own ``sys.exit`` on SIGTERM) is not the step's doing: it
still propagates and stops the program, as it did.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from ewfd import (
    Engine,
    MemoryStore,
    QueueSpec,
    RetryPolicy,
    SQLiteStore,
    Step,
    StepContext,
    WorkflowFailed,
    WorkflowStatus,
    WorkflowTemplate,
    backoff,
    state_type,
)
from ewfd.worker import Worker

State = dict[str, Any]
WAIT = 10.0


@pytest.fixture(params=["sqlite", "memory"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    store = SQLiteStore(tmp_path / "ewfd.db") if request.param == "sqlite" else MemoryStore()
    eng = Engine(store=store)
    yield eng
    eng.close()


def argparse_main(ctx: StepContext, state: State) -> None:
    """A command-line program's main() called as a step, with an option it does not know."""
    parser = argparse.ArgumentParser(prog="report")
    parser.add_argument("--day")
    parser.parse_args(["--bad-option"])


def exits(ctx: StepContext, state: State) -> None:
    state["touched"] = True
    raise SystemExit("report: nothing to do")


def interrupts(ctx: StepContext, state: State) -> None:
    raise KeyboardInterrupt("raised by the step itself")


def closes(ctx: StepContext, state: State) -> None:
    raise GeneratorExit()


async def async_exits(ctx: StepContext, state: State) -> None:
    await asyncio.sleep(0)
    raise SystemExit(3)


async def async_interrupts(ctx: StepContext, state: State) -> None:
    await asyncio.sleep(0)
    raise KeyboardInterrupt("async step")


async def async_cancels_itself(ctx: StepContext, state: State) -> None:
    await asyncio.sleep(0)
    raise asyncio.CancelledError("given up")


STEPS: dict[str, tuple[Callable[..., Any], str]] = {
    "argparse": (argparse_main, "SystemExit: 2"),
    "exit": (exits, "SystemExit: report: nothing to do"),
    "keyboard": (interrupts, "KeyboardInterrupt: raised by the step itself"),
    "generator": (closes, "GeneratorExit"),
    "async_exit": (async_exits, "SystemExit: 3"),
    "async_keyboard": (async_interrupts, "KeyboardInterrupt: async step"),
    "async_cancel": (async_cancels_itself, "CancelledError: given up"),
}


def define(engine: Engine, fn: Callable[..., Any], *, retries: int = 1, **hooks: Any) -> None:
    engine.register("bad", fn)
    engine.register("after", lambda ctx, state: state.update(after=True))
    policy = RetryPolicy(max_attempts=retries, backoff=backoff.zero()) if retries > 1 else None
    engine.register_template("wf", WorkflowTemplate(
        steps=[Step("bad", retry=policy), Step("after")], **hooks))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(STEPS))
def test_a_base_exception_from_a_step_fails_the_attempt(engine: Engine, kind: str) -> None:
    fn, text = STEPS[kind]
    define(engine, fn, retries=2)
    wf = engine.new_workflow("wf", state={"n": 1})
    with pytest.raises(WorkflowFailed) as info:
        engine.run(wf)
    failed = info.value.workflow
    assert failed.status == WorkflowStatus.FAILED
    assert failed.error == f"step bad: {text}"
    assert type(info.value.__cause__).__name__ == text.split(":")[0]
    stored = engine.store.load_workflow(wf.uuid)
    assert (stored.status, stored.current_step, stored.state) == \
        (WorkflowStatus.FAILED, 0, {"n": 1})
    assert [(a.attempt, a.outcome, a.error) for a in engine.store.history(wf.uuid)] == \
        [(1, "failed", text), (2, "failed", text)]


@pytest.mark.timeout(30)
def test_a_system_exit_step_fails_in_a_background_run(engine: Engine) -> None:
    define(engine, argparse_main)
    future = engine.run(engine.new_workflow("wf"), background=True)
    with pytest.raises(WorkflowFailed, match="SystemExit: 2"):
        future.result(WAIT)


@pytest.mark.timeout(30)
def test_the_in_process_worker_lives_on_after_a_system_exit_step(engine: Engine) -> None:
    define(engine, exits)
    uuids = [engine.run(engine.new_workflow("wf", queue="q")).uuid for _ in range(3)]
    outcomes = Worker(engine, engine.store, QueueSpec("q")).drain()
    assert [o.workflow.status for o in outcomes] == [WorkflowStatus.FAILED] * 3
    for uuid in uuids:
        assert engine.store.load_workflow(uuid).error == \
            "step bad: SystemExit: report: nothing to do"


def wait_for_failed(engine: Engine, uuid: str) -> None:
    """Poll the store until the workflow is failed (deadline WAIT)."""
    pause = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if engine.store.load_workflow(uuid).status == WorkflowStatus.FAILED:
            return
        pause.wait(0.01)
    raise AssertionError(f"workflow {uuid} did not fail within {WAIT}s")


@pytest.mark.timeout(30)
def test_a_worker_thread_survives_a_system_exit_step(engine: Engine) -> None:
    define(engine, exits)
    worker = Worker(engine, engine.store, QueueSpec("q", poll_interval=0.01))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        for _ in range(2):
            wait_for_failed(engine, engine.run(engine.new_workflow("wf", queue="q")).uuid)
            assert thread.is_alive()
    finally:
        worker.stop.set()
        thread.join(WAIT)
    assert not thread.is_alive()


@pytest.mark.timeout(30)
def test_a_before_step_hook_raising_system_exit_fails_the_attempt(engine: Engine) -> None:
    def hook(wf: Any, step: Step) -> None:
        if step.name == "bad":
            raise SystemExit("hook says no")

    define(engine, lambda ctx, state: None, before_step=[hook])
    with pytest.raises(WorkflowFailed, match="step bad: SystemExit: hook says no"):
        engine.run(engine.new_workflow("wf"))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("exc", [SystemExit(1), KeyboardInterrupt(), GeneratorExit()],
                         ids=lambda e: type(e).__name__)
def test_other_hooks_raising_base_exceptions_are_logged_and_ignored(
        engine: Engine, exc: BaseException) -> None:
    def hook(*args: Any) -> None:
        raise exc

    define(engine, lambda ctx, state: None, before_workflow=[hook], after_step=[hook],
           after_workflow=[hook])
    with structlog.testing.capture_logs() as logs:
        done = engine.run(engine.new_workflow("wf"))
    assert done.status == WorkflowStatus.COMPLETED
    failed = [e["hook"] for e in logs if e["event"] == "hook.failed"]
    assert failed == ["before_workflow", "after_step", "after_step", "after_workflow"]


@state_type
@dataclass
class Grumpy:
    """A state type whose constructor exits (its code runs when a stored state is decoded)."""

    mood: str = "bad"

    def __post_init__(self) -> None:
        raise SystemExit(f"grumpy: {self.mood}")


@pytest.mark.timeout(30)
def test_a_state_type_raising_system_exit_rejects_the_job(tmp_path: Path) -> None:
    """Decoding a stored state runs registered classes' code: a SystemExit there is the row's
    problem, not the worker's."""
    engine = Engine(store=SQLiteStore(tmp_path / "ewfd.db"))
    try:
        define(engine, lambda ctx, state: None)
        uuid = engine.run(engine.new_workflow("wf", queue="q")).uuid
        tag = f"{Grumpy.__module__}:{Grumpy.__qualname__}"
        with contextlib.closing(sqlite3.connect(tmp_path / "ewfd.db")) as conn, conn:
            conn.execute("UPDATE jobs SET state = ? WHERE uuid = ?",
                         (json.dumps({"g": {"__ewfd_type__": tag, "mood": "bad"}}), uuid))
        outcomes = Worker(engine, engine.store, QueueSpec("q")).drain()
        assert [o.rejected for o in outcomes] == [True]
        assert "grumpy: bad" in (engine.store.load_workflow(uuid).error or "")
    finally:
        engine.close()


# -- what a signal raises is not the step's doing --------------------------------------------
@pytest.mark.timeout(30)
def test_ctrl_c_during_a_step_still_stops_engine_run(engine: Engine) -> None:
    def step(ctx: StepContext, state: State) -> None:
        os.kill(os.getpid(), signal.SIGINT)   # what a terminal's Ctrl-C does to this process
        threading.Event().wait(WAIT)

    define(engine, step, retries=3)
    wf = engine.new_workflow("wf")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        engine.run(wf)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert [a.outcome for a in engine.store.history(wf.uuid)] == []


@pytest.mark.timeout(30)
def test_ctrl_c_during_an_async_step_still_stops_engine_run(engine: Engine) -> None:
    async def step(ctx: StepContext, state: State) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(WAIT)

    define(engine, step, retries=3)
    wf = engine.new_workflow("wf")
    with pytest.raises(KeyboardInterrupt):
        engine.run(wf)
    assert [a.outcome for a in engine.store.history(wf.uuid)] == []


@pytest.mark.timeout(30)
def test_a_programs_own_signal_handler_exit_still_stops_engine_run(engine: Engine) -> None:
    def on_usr2(signum: int, frame: Any) -> None:
        raise SystemExit("told to go")

    def step(ctx: StepContext, state: State) -> None:
        os.kill(os.getpid(), signal.SIGUSR2)
        threading.Event().wait(WAIT)

    define(engine, step, retries=3)
    previous = signal.signal(signal.SIGUSR2, on_usr2)
    try:
        with pytest.raises(SystemExit, match="told to go"):
            engine.run(engine.new_workflow("wf"))
    finally:
        signal.signal(signal.SIGUSR2, previous)


class _Stopper:
    def __call__(self, signum: int, frame: Any) -> None:
        raise SystemExit("told to go")

    def on_signal(self, signum: int, frame: Any) -> None:
        raise SystemExit("told to go")


def _stop_with(reason: str, signum: int, frame: Any) -> None:
    raise SystemExit(reason)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("handler", [_Stopper(), _Stopper().on_signal,
                                     functools.partial(_stop_with, "told to go")],
                         ids=["callable-object", "bound-method", "partial"])
def test_any_form_of_python_signal_handler_is_recognised(engine: Engine, handler: Any) -> None:
    def step(ctx: StepContext, state: State) -> None:
        os.kill(os.getpid(), signal.SIGUSR2)
        threading.Event().wait(WAIT)

    define(engine, step)
    previous = signal.signal(signal.SIGUSR2, handler)
    try:
        with pytest.raises(SystemExit, match="told to go"):
            engine.run(engine.new_workflow("wf"))
    finally:
        signal.signal(signal.SIGUSR2, previous)
