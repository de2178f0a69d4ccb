"""A step that overran its timeout never counts as completed (issue 10, E13).

However the overrun happens (an ``async def`` step that blocks its event loop, a sync
step that swallows ``StepTimeout``, a sync step that returns a coroutine), wherever the
step runs (the main thread, a background thread, the in-process worker), the attempt
fails with ``timed out after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ewfd import (
    Engine,
    MemoryStore,
    SQLiteStore,
    Step,
    StepContext,
    WorkflowFailed,
    WorkflowStatus,
    WorkflowTemplate,
)
from ewfd.worker import Worker

WAIT = 10.0
TIMEOUT = 0.2
OVERRUN = 0.8      # how long each step below blocks: four times its timeout

State = dict[str, Any]


async def blocks_its_loop(ctx: StepContext, state: State) -> None:
    time.sleep(OVERRUN)   # the fault under test: a blocking call inside async code
    state["done"] = True


def swallows_the_timeout(ctx: StepContext, state: State) -> None:
    end = time.monotonic() + OVERRUN
    while time.monotonic() < end:
        with contextlib.suppress(BaseException):
            time.sleep(0.01)
    state["done"] = True


def returns_a_blocking_coroutine(ctx: StepContext, state: State) -> Any:
    return blocks_its_loop(ctx, state)


def slow_then_coroutine(ctx: StepContext, state: State) -> Any:
    time.sleep(TIMEOUT * 0.75)     # most of the budget spent before the coroutine starts

    async def rest() -> None:
        await asyncio.sleep(TIMEOUT * 0.75)
        state["done"] = True

    return rest()


STEPS: dict[str, Callable[..., Any]] = {
    "async_blocking": blocks_its_loop,
    "swallowing": swallows_the_timeout,
    "coroutine_returning": returns_a_blocking_coroutine,
    "split_budget": slow_then_coroutine,
}


@pytest.fixture(params=["sqlite", "memory"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    store = SQLiteStore(tmp_path / "ewfd.db") if request.param == "sqlite" else MemoryStore()
    eng = Engine(store=store)
    for name, fn in STEPS.items():
        eng.register(name, fn)
        eng.register_template(name, WorkflowTemplate(steps=[Step(name, timeout=TIMEOUT)]))
    yield eng
    eng.close()


def assert_timed_out(engine: Engine, uuid: str) -> None:
    wf = engine.store.load_workflow(uuid)
    assert wf.status == WorkflowStatus.FAILED, wf
    assert "timed out after" in (wf.error or ""), wf.error
    assert "done" not in wf.state
    assert [a.outcome for a in engine.store.history(uuid)] == ["failed"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("step", sorted(STEPS))
def test_an_overrun_fails_in_the_main_thread(engine: Engine, step: str) -> None:
    wf = engine.new_workflow(step)
    with pytest.raises(WorkflowFailed):
        engine.run(wf)
    assert_timed_out(engine, wf.uuid)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("step", sorted(STEPS))
def test_an_overrun_fails_in_a_background_thread(engine: Engine, step: str) -> None:
    wf = engine.new_workflow(step)
    fut = engine.run(wf, background=True)
    assert isinstance(fut.exception(timeout=WAIT), WorkflowFailed)
    assert_timed_out(engine, wf.uuid)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("step", sorted(STEPS))
def test_an_overrun_fails_in_the_in_process_worker(engine: Engine, step: str) -> None:
    spec = engine.create_queue("q", poll_interval=0.05)
    wf = engine.run(engine.new_workflow(step, queue="q"))
    outcomes = Worker(engine, engine.store, spec).drain()
    assert [o.workflow.status for o in outcomes] == [WorkflowStatus.FAILED]
    assert_timed_out(engine, wf.uuid)


@pytest.mark.timeout(30)
def test_a_blocking_async_step_in_the_main_thread_is_interrupted_on_time(engine: Engine) -> None:
    """In a main thread the alarm interrupts the blocking call itself, as for a sync step."""
    wf = engine.new_workflow("async_blocking")
    started = time.monotonic()
    with pytest.raises(WorkflowFailed):
        engine.run(wf)
    assert time.monotonic() - started < OVERRUN
    assert_timed_out(engine, wf.uuid)
