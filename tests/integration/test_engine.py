"""The engine end to end, in process: the Go EWF suite's behaviours re-expressed.

Most tests run against a real SQLite file in ``tmp_path``; the ones marked
with the ``engine`` fixture also run on a ``MemoryStore`` and on an engine made
with no store at all. Tests wait on events or on a deadline, never on a sleep.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from ewfd import (
    Engine,
    FailWorkflowNow,
    MemoryStore,
    QueueNotFound,
    QueueSpec,
    RetryPolicy,
    SQLiteStore,
    Step,
    StepContext,
    TemplateNotFound,
    Workflow,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowStatus,
    WorkflowTemplate,
    backoff,
    identity,
    state_type,
)

WAIT = 10.0      # upper bound for anything the tests wait on; never reached when all is well
ZERO3 = RetryPolicy(max_attempts=3, backoff=backoff.zero())

State = dict[str, Any]


# -- fixtures and helpers ---------------------------------------------------------------------
@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ewfd.db"


@pytest.fixture
def make_engine(db_path: Path) -> Iterator[Callable[..., Engine]]:
    """Engines on the test's SQLite file; all closed at teardown."""
    made: list[Engine] = []

    def make(**kwargs: Any) -> Engine:
        engine = Engine(store=SQLiteStore(db_path), **kwargs)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


@pytest.fixture(params=["sqlite", "memory", "no-store"])
def engine(request: pytest.FixtureRequest, db_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = Engine(store=SQLiteStore(db_path))
    elif request.param == "memory":
        eng = Engine(store=MemoryStore())
    else:
        eng = Engine()
    yield eng
    eng.close()


@pytest.fixture
def sqlite_engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


def define(engine: Engine, name: str, steps: list[tuple[Any, ...]], **hooks: Any) -> None:
    """Register each ``(step name, function[, Step kwargs])`` and a template ``name`` of them."""
    template_steps = []
    for entry in steps:
        step_name, fn = entry[0], entry[1]
        options: dict[str, Any] = entry[2] if len(entry) > 2 else {}
        engine.register(step_name, fn)
        template_steps.append(Step(step_name, **options))
    engine.register_template(name, WorkflowTemplate(steps=template_steps, **hooks))


def run_failing(engine: Engine, wf: Workflow) -> WorkflowFailed:
    with pytest.raises(WorkflowFailed) as info:
        engine.run(wf)
    return info.value


def outcomes(engine: Engine, uuid: str) -> list[tuple[str, int, str]]:
    return [(a.step, a.attempt, a.outcome) for a in engine.store.history(uuid)]


def fail_times(n: int, calls: list[int], exc: type[Exception] = RuntimeError) -> Callable[..., Any]:
    """A step that fails its first ``n`` calls, recording each attempt number in ``calls``."""

    def step(ctx: StepContext, state: State) -> None:
        calls.append(ctx.attempt)
        if len(calls) <= n:
            raise exc(f"failure {len(calls)}")
        state["done"] = True

    return step


# -- workflow options and a simple run -------------------------------------------------------
def test_workflow_options_are_persisted_and_reloaded(sqlite_engine: Engine, db_path: Path
                                                     ) -> None:
    define(sqlite_engine, "billing", [("charge", lambda ctx, state: None)])
    wf = sqlite_engine.new_workflow("billing", queue="billing-jobs", display_name="Q3 run",
                                    metadata={"region": "us"}, state={"customer": 42})
    returned = sqlite_engine.run(wf)
    assert returned.status == WorkflowStatus.PENDING

    other = SQLiteStore(db_path)
    try:
        loaded = other.load_workflow(wf.uuid)
    finally:
        other.close()
    assert loaded.name == "billing"
    assert loaded.queue == "billing-jobs"
    assert loaded.display_name == "Q3 run"
    assert loaded.metadata == {"region": "us"}
    assert loaded.state == {"customer": 42}
    assert loaded.status == WorkflowStatus.PENDING
    assert loaded.current_step == 0
    assert [s.name for s in loaded.steps] == ["charge"]
    assert abs((loaded.created_at - wf.created_at).total_seconds()) < 1


def test_metadata_reaches_the_step_and_survives_the_run(sqlite_engine: Engine) -> None:
    seen: list[dict[str, str]] = []
    define(sqlite_engine, "meta", [("look", lambda ctx, state: seen.append(ctx.metadata))])
    wf = sqlite_engine.new_workflow("meta", display_name="nightly", metadata={"region": "eu"})
    done = sqlite_engine.run(wf)
    assert seen == [{"region": "eu"}]
    latest = sqlite_engine.store.load_workflow(wf.uuid)
    assert (latest.display_name, latest.metadata) == ("nightly", {"region": "eu"})
    assert done.status == WorkflowStatus.COMPLETED


def test_simple_run_completes_and_persists_every_step(engine: Engine) -> None:
    def hello(ctx: StepContext, state: State) -> None:
        state["greeting"] = f"Hello, {state['name']}!"

    def bye(ctx: StepContext, state: State) -> None:
        state["farewell"] = f"Bye after {state['greeting']!r}"

    define(engine, "greet", [("hello", hello), ("bye", bye)])
    wf = engine.new_workflow("greet", state={"name": "EWF"})
    done = engine.run(wf)

    assert done.status == WorkflowStatus.COMPLETED
    latest = engine.store.load_workflow(wf.uuid)
    assert latest.status == WorkflowStatus.COMPLETED
    assert latest.current_step == 2
    assert latest.error is None
    assert latest.state == {"name": "EWF", "greeting": "Hello, EWF!",
                            "farewell": "Bye after 'Hello, EWF!'"}
    assert outcomes(engine, wf.uuid) == [("hello", 1, "completed"), ("bye", 1, "completed")]


def test_a_completed_workflow_is_never_run_again(sqlite_engine: Engine) -> None:
    calls: list[int] = []
    define(sqlite_engine, "once", [("count", lambda ctx, state: calls.append(1))])
    wf = sqlite_engine.new_workflow("once")
    sqlite_engine.run(wf)
    again = sqlite_engine.run(wf)
    assert again.status == WorkflowStatus.COMPLETED
    assert sqlite_engine.resume_workflows() == []
    assert calls == [1]


def test_unknown_template_raises_template_not_found(engine: Engine) -> None:
    with pytest.raises(TemplateNotFound):
        engine.new_workflow("nope")


def test_load_of_an_unknown_workflow_raises(engine: Engine) -> None:
    with pytest.raises(WorkflowNotFound):
        engine.store.load_workflow("00000000-0000-0000-0000-000000000000")


# -- failures and retries --------------------------------------------------------------------
class Kaput(Exception):
    pass


def test_failing_step_raises_workflow_failed_with_cause(engine: Engine) -> None:
    raised: list[BaseException] = []

    def boom(ctx: StepContext, state: State) -> None:
        exc = Kaput("the printer is on fire")
        raised.append(exc)
        raise exc

    define(engine, "fails", [("boom", boom)])
    wf = engine.new_workflow("fails")
    failed = run_failing(engine, wf)

    assert failed.__cause__ is raised[0]
    assert failed.workflow.uuid == wf.uuid
    assert failed.workflow.status == WorkflowStatus.FAILED
    assert failed.workflow.error == "step boom: the printer is on fire"
    latest = engine.store.load_workflow(wf.uuid)
    assert latest.status == WorkflowStatus.FAILED
    assert latest.error == "step boom: the printer is on fire"
    assert latest.current_step == 0


def test_exception_text_is_recorded_in_history(engine: Engine) -> None:
    def flaky(ctx: StepContext, state: State) -> None:
        if ctx.attempt == 1:
            raise ValueError(f"bad input on attempt {ctx.attempt}")

    define(engine, "rec", [("flaky", flaky, {"retry": ZERO3})])
    wf = engine.new_workflow("rec")
    engine.run(wf)
    rows = engine.store.history(wf.uuid)
    assert [(r.outcome, r.error) for r in rows] == [("failed", "bad input on attempt 1"),
                                                    ("completed", None)]


def test_retry_until_success(engine: Engine) -> None:
    calls: list[int] = []
    policy = RetryPolicy(max_attempts=5, backoff=backoff.zero())
    define(engine, "retry", [("flaky", fail_times(2, calls), {"retry": policy})])
    wf = engine.new_workflow("retry")
    done = engine.run(wf)
    assert done.status == WorkflowStatus.COMPLETED
    assert calls == [1, 2, 3]
    assert outcomes(engine, wf.uuid) == [("flaky", 1, "failed"), ("flaky", 2, "failed"),
                                         ("flaky", 3, "completed")]
    assert engine.store.load_workflow(wf.uuid).state == {"done": True}


def test_retries_exhausted_after_exactly_max_attempts(engine: Engine) -> None:
    calls: list[int] = []
    policy = RetryPolicy(max_attempts=4, backoff=backoff.zero())
    define(engine, "exhaust", [("flaky", fail_times(99, calls), {"retry": policy})])
    wf = engine.new_workflow("exhaust")
    failed = run_failing(engine, wf)
    assert calls == [1, 2, 3, 4]
    assert outcomes(engine, wf.uuid) == [("flaky", n, "failed") for n in (1, 2, 3, 4)]
    assert failed.workflow.error == "step flaky: failure 4"
    assert str(failed.__cause__) == "failure 4"


def test_retry_waits_for_the_backoff(sqlite_engine: Engine) -> None:
    calls: list[int] = []
    policy = RetryPolicy(max_attempts=3, backoff=backoff.constant(0.05))
    define(sqlite_engine, "wait", [("flaky", fail_times(2, calls), {"retry": policy})])
    started = time.monotonic()
    sqlite_engine.run(sqlite_engine.new_workflow("wait"))
    assert time.monotonic() - started >= 0.1
    assert calls == [1, 2, 3]


@pytest.mark.parametrize("retry", [None, RetryPolicy(max_attempts=5, backoff=None)],
                         ids=["no-policy", "backoff-none"])
def test_without_retry_policy_or_backoff_a_step_runs_once(engine: Engine,
                                                          retry: RetryPolicy | None) -> None:
    calls: list[int] = []
    define(engine, "once", [("flaky", fail_times(99, calls), {"retry": retry})])
    wf = engine.new_workflow("once")
    run_failing(engine, wf)
    assert calls == [1]
    assert outcomes(engine, wf.uuid) == [("flaky", 1, "failed")]


class PaymentDeclined(Exception):
    pass


def _fail_now(ctx: StepContext, state: State) -> None:
    raise FailWorkflowNow("card stolen")


def _wrapped_fail_now(ctx: StepContext, state: State) -> None:
    raise PaymentDeclined("card stolen") from FailWorkflowNow()


@pytest.mark.parametrize("raiser", [_fail_now, _wrapped_fail_now], ids=["direct", "wrapped"])
def test_fail_workflow_now_bypasses_retries(engine: Engine,
                                            raiser: Callable[[StepContext, State], None]) -> None:
    calls: list[int] = []

    def step(ctx: StepContext, state: State) -> None:
        calls.append(ctx.attempt)
        raiser(ctx, state)

    policy = RetryPolicy(max_attempts=5, backoff=backoff.zero())
    define(engine, "now", [("pay", step, {"retry": policy}), ("never", lambda c, s: None)])
    wf = engine.new_workflow("now")
    failed = run_failing(engine, wf)
    assert calls == [1]
    assert failed.workflow.error == "step pay: card stolen"
    assert outcomes(engine, wf.uuid) == [("pay", 1, "failed")]


# -- timeouts ------------------------------------------------------------------------------------
def test_sync_step_blocked_in_sleep_is_interrupted_in_the_main_thread(engine: Engine) -> None:
    assert threading.current_thread() is threading.main_thread()
    finished: list[bool] = []

    def slow(ctx: StepContext, state: State) -> None:
        time.sleep(WAIT)
        finished.append(True)

    define(engine, "slow", [("slow", slow, {"timeout": 0.1})])
    wf = engine.new_workflow("slow")
    started = time.monotonic()
    failed = run_failing(engine, wf)
    assert time.monotonic() - started < WAIT / 2
    assert finished == []
    assert failed.workflow.error is not None
    assert "timed out after" in failed.workflow.error
    assert failed.workflow.error.startswith("step slow: ")


def test_sync_step_blocked_in_a_socket_read_is_interrupted(sqlite_engine: Engine) -> None:
    left, right = socket.socketpair()
    try:
        define(sqlite_engine, "sock", [("read", lambda ctx, state: left.recv(1),
                                        {"timeout": 0.1})])
        started = time.monotonic()
        failed = run_failing(sqlite_engine, sqlite_engine.new_workflow("sock"))
        assert time.monotonic() - started < WAIT / 2
        assert "timed out after" in (failed.workflow.error or "")
    finally:
        left.close()
        right.close()


def test_timeout_with_retry_makes_exactly_max_attempts(engine: Engine) -> None:
    calls: list[int] = []

    def slow(ctx: StepContext, state: State) -> None:
        calls.append(ctx.attempt)
        time.sleep(WAIT)

    define(engine, "slowretry", [("slow", slow, {"timeout": 0.05, "retry": ZERO3})])
    wf = engine.new_workflow("slowretry")
    run_failing(engine, wf)
    assert calls == [1, 2, 3]
    rows = engine.store.history(wf.uuid)
    assert [r.outcome for r in rows] == ["failed"] * 3
    assert all("timed out after" in (r.error or "") for r in rows)


def test_async_step_timeout_cancels_the_coroutine(engine: Engine) -> None:
    cancelled = threading.Event()

    async def slow(ctx: StepContext, state: State) -> None:
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    define(engine, "aslow", [("aslow", slow, {"timeout": 0.1})])
    started = time.monotonic()
    failed = run_failing(engine, engine.new_workflow("aslow"))
    assert time.monotonic() - started < WAIT / 2
    assert cancelled.is_set()
    assert "timed out after" in (failed.workflow.error or "")


def test_async_step_runs_and_mutates_state(engine: Engine) -> None:
    async def fetch(ctx: StepContext, state: State) -> None:
        await asyncio.sleep(0)
        state["fetched"] = ctx.step_name

    define(engine, "async", [("fetch", fetch, {"timeout": 5.0})])
    done = engine.run(engine.new_workflow("async"))
    assert done.status == WorkflowStatus.COMPLETED
    assert engine.store.load_workflow(done.uuid).state == {"fetched": "fetch"}


def test_except_exception_in_step_code_does_not_swallow_the_timeout(sqlite_engine: Engine
                                                                    ) -> None:
    swallowed: list[bool] = []

    def stubborn(ctx: StepContext, state: State) -> None:
        try:
            time.sleep(WAIT)
        except Exception:
            swallowed.append(True)

    define(sqlite_engine, "stubborn", [("stubborn", stubborn, {"timeout": 0.1})])
    failed = run_failing(sqlite_engine, sqlite_engine.new_workflow("stubborn"))
    assert swallowed == []
    assert "timed out after" in (failed.workflow.error or "")


def test_off_the_main_thread_an_overrun_fails_when_the_step_returns(engine: Engine) -> None:
    finished: list[str] = []

    def slow(ctx: StepContext, state: State) -> None:
        time.sleep(0.3)     # the overrun under test, not a synchronisation
        finished.append(threading.current_thread().name)

    define(engine, "bg", [("slow", slow, {"timeout": 0.05})])
    wf = engine.new_workflow("bg")
    fut = engine.run(wf, background=True)
    exc = fut.exception(timeout=WAIT)
    assert isinstance(exc, WorkflowFailed)
    assert len(finished) == 1 and finished[0] != threading.main_thread().name
    assert "timed out after" in (exc.workflow.error or "")
    assert engine.store.load_workflow(wf.uuid).status == WorkflowStatus.FAILED


def test_a_step_timeout_keeps_an_interval_timer_armed_around_it(sqlite_engine: Engine) -> None:
    define(sqlite_engine, "quick", [("quick", lambda ctx, state: None, {"timeout": 5.0})])
    previous_handler = signal.signal(signal.SIGALRM, lambda signum, frame: None)
    previous_timer = signal.setitimer(signal.ITIMER_REAL, 100.0)
    try:
        sqlite_engine.run(sqlite_engine.new_workflow("quick"))
        remaining = signal.getitimer(signal.ITIMER_REAL)[0]
    finally:
        signal.setitimer(signal.ITIMER_REAL, *previous_timer)
        signal.signal(signal.SIGALRM, previous_handler)
    assert remaining > 90.0


# -- hooks ---------------------------------------------------------------------------------------
def test_hooks_are_called_once_per_run_and_once_per_attempt(engine: Engine) -> None:
    calls: list[tuple[Any, ...]] = []
    raised: list[BaseException] = []

    def flaky(ctx: StepContext, state: State) -> None:
        if ctx.attempt < 3:
            exc = RuntimeError(f"attempt {ctx.attempt}")
            raised.append(exc)
            raise exc

    def after_workflow(wf: Workflow, exc: BaseException | None) -> None:
        stored = engine.store.load_workflow(wf.uuid).status   # saved before the hook runs
        calls.append(("after_workflow", exc, stored))

    define(engine, "hooks", [("first", lambda c, s: None), ("flaky", flaky, {"retry": ZERO3})],
           before_workflow=[lambda wf: calls.append(("before_workflow",))],
           after_workflow=[after_workflow],
           before_step=[lambda wf, step: calls.append(("before_step", step.name))],
           after_step=[lambda wf, step, exc: calls.append(("after_step", step.name, exc))])
    engine.run(engine.new_workflow("hooks"))

    assert calls == [
        ("before_workflow",),
        ("before_step", "first"), ("after_step", "first", None),
        ("before_step", "flaky"), ("after_step", "flaky", raised[0]),
        ("before_step", "flaky"), ("after_step", "flaky", raised[1]),
        ("before_step", "flaky"), ("after_step", "flaky", None),
        ("after_workflow", None, WorkflowStatus.COMPLETED),
    ]


def test_after_workflow_receives_the_failing_exception(engine: Engine) -> None:
    seen: list[tuple[BaseException | None, WorkflowStatus]] = []
    raised: list[BaseException] = []

    def boom(ctx: StepContext, state: State) -> None:
        raised.append(Kaput("no"))
        raise raised[0]

    define(engine, "afterfail", [("boom", boom)],
           after_workflow=[lambda wf, exc: seen.append(
               (exc, engine.store.load_workflow(wf.uuid).status))])
    run_failing(engine, engine.new_workflow("afterfail"))
    assert seen == [(raised[0], WorkflowStatus.FAILED)]


def test_hook_exceptions_are_logged_and_do_not_stop_the_workflow(engine: Engine) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("hook is broken")

    ran: list[str] = []
    define(engine, "brokenhooks", [("a", lambda c, s: ran.append("a")),
                                   ("b", lambda c, s: ran.append("b"))],
           before_workflow=[broken], after_workflow=[broken], after_step=[broken])
    with structlog.testing.capture_logs() as logs:
        done = engine.run(engine.new_workflow("brokenhooks"))
    assert done.status == WorkflowStatus.COMPLETED
    assert ran == ["a", "b"]
    failed_hooks = [e["hook"] for e in logs if e["event"] == "hook.failed"]
    assert failed_hooks == ["before_workflow", "after_step", "after_step", "after_workflow"]
    assert all(e["error"] == "hook is broken" for e in logs if e["event"] == "hook.failed")


def test_a_before_step_hook_exception_fails_that_attempt(engine: Engine) -> None:
    hook_calls: list[int] = []
    step_calls: list[int] = []
    after: list[BaseException | None] = []

    def picky(wf: Workflow, step: Step) -> None:
        hook_calls.append(1)
        if len(hook_calls) == 1:
            raise PermissionError("not yet")

    policy = RetryPolicy(max_attempts=2, backoff=backoff.zero())
    define(engine, "picky", [("work", lambda c, s: step_calls.append(c.attempt),
                              {"retry": policy})],
           before_step=[picky], after_step=[lambda wf, step, exc: after.append(exc)])
    with structlog.testing.capture_logs() as logs:
        wf = engine.new_workflow("picky")
        done = engine.run(wf)
    assert done.status == WorkflowStatus.COMPLETED
    assert step_calls == [2]
    assert isinstance(after[0], PermissionError) and after[1:] == [None]
    rows = engine.store.history(wf.uuid)
    assert [(r.attempt, r.outcome, r.error) for r in rows] == [(1, "failed", "not yet"),
                                                               (2, "completed", None)]
    assert [e["hook"] for e in logs if e["event"] == "hook.failed"] == ["before_step"]


def test_a_before_step_hook_exception_without_retries_fails_the_workflow(engine: Engine
                                                                         ) -> None:
    ran: list[int] = []

    def deny(wf: Workflow, step: Step) -> None:
        raise PermissionError("denied")

    define(engine, "deny", [("work", lambda c, s: ran.append(1))], before_step=[deny])
    failed = run_failing(engine, engine.new_workflow("deny"))
    assert ran == []
    assert failed.workflow.error == "step work: denied"


# -- state ---------------------------------------------------------------------------------------
def test_each_attempt_starts_from_the_last_saved_state(engine: Engine) -> None:
    seen: list[State] = []

    def first(ctx: StepContext, state: State) -> None:
        state["n"] = 1

    def second(ctx: StepContext, state: State) -> None:
        seen.append(dict(state))
        state["n"] += 10
        state[f"attempt{ctx.attempt}"] = True
        if ctx.attempt == 1:
            raise RuntimeError("lose my changes")

    define(engine, "fresh", [("first", first), ("second", second, {"retry": ZERO3})])
    wf = engine.new_workflow("fresh", state={"n": 0})
    engine.run(wf)
    assert seen == [{"n": 1}, {"n": 1}]
    assert engine.store.load_workflow(wf.uuid).state == {"n": 11, "attempt2": True}


def test_workflow_failed_carries_the_saved_state(sqlite_engine: Engine) -> None:
    def scribble(ctx: StepContext, state: State) -> None:
        state["scratch"] = "half-done"
        raise RuntimeError("gave up")

    define(sqlite_engine, "scribble", [("ok", lambda c, s: s.update(ok=1)),
                                       ("scribble", scribble)])
    wf = sqlite_engine.new_workflow("scribble")
    failed = run_failing(sqlite_engine, wf)
    assert sqlite_engine.store.load_workflow(wf.uuid).state == {"ok": 1}
    assert failed.workflow.state == {"ok": 1}


def test_state_that_is_not_json_fails_the_attempt_naming_the_key(engine: Engine) -> None:
    def good(ctx: StepContext, state: State) -> None:
        state["ok"] = 1

    def bad(ctx: StepContext, state: State) -> None:
        state["note"] = "fine"
        state["tags"] = {"a", "b"}

    define(engine, "badstate", [("good", good), ("bad", bad)])
    wf = engine.new_workflow("badstate")
    failed = run_failing(engine, wf)
    assert (failed.workflow.error or "").startswith("step bad: ")
    assert "'tags'" in (failed.workflow.error or "")
    latest = engine.store.load_workflow(wf.uuid)
    assert latest.state == {"ok": 1}
    assert latest.current_step == 1


def test_state_over_the_size_limit_fails_naming_the_largest_key(db_path: Path,
                                                                make_engine: Callable[..., Engine]
                                                                ) -> None:
    engine = make_engine(max_state_size=500)

    def grow(ctx: StepContext, state: State) -> None:
        state["small"] = "s" * 50
        state["big"] = "b" * 600

    define(engine, "big", [("grow", grow)])
    wf = engine.new_workflow("big", state={"seed": 1})
    failed = run_failing(engine, wf)
    error = failed.workflow.error or ""
    assert error.startswith("step grow: ")
    assert "'big'" in error and "500" in error
    assert engine.store.load_workflow(wf.uuid).state == {"seed": 1}


@state_type
@dataclass
class Address:
    street: str
    city: str


@state_type
@dataclass
class Person:
    name: str
    age: int
    address: Address
    tags: list[str] = field(default_factory=list)


@dataclass
class Unmarked:
    value: int


def test_typed_state_comes_back_as_instances_after_reload(sqlite_engine: Engine,
                                                          db_path: Path) -> None:
    seen: list[Any] = []

    def create(ctx: StepContext, state: State) -> None:
        state["person"] = Person("Ada", 36, Address("1 Analytical St", "London"), ["math"])

    def read(ctx: StepContext, state: State) -> None:
        seen.append(state["person"])
        state["city"] = state["person"].address.city

    define(sqlite_engine, "typed", [("create", create), ("read", read)])
    wf = sqlite_engine.new_workflow("typed")
    sqlite_engine.run(wf)

    assert isinstance(seen[0], Person) and isinstance(seen[0].address, Address)
    other = SQLiteStore(db_path)
    try:
        person = other.load_workflow(wf.uuid).state["person"]
    finally:
        other.close()
    assert person == Person("Ada", 36, Address("1 Analytical St", "London"), ["math"])
    assert type(person) is Person and type(person.address) is Address


def test_an_unmarked_dataclass_in_state_fails_the_attempt(engine: Engine) -> None:
    define(engine, "unmarked", [("put", lambda c, s: s.update(thing=Unmarked(1)))])
    failed = run_failing(engine, engine.new_workflow("unmarked"))
    assert "'thing'" in (failed.workflow.error or "")
    assert "state_type" in (failed.workflow.error or "")


# -- templates and queues ------------------------------------------------------------------------
def test_templates_are_persisted_and_loadable_elsewhere(make_engine: Callable[..., Engine],
                                                        db_path: Path) -> None:
    first = make_engine()
    billing = [Step("charge", retry=RetryPolicy(3, backoff.constant(2.0))),
               Step("notify", retry=RetryPolicy(5, backoff.exponential(0.5, 10.0, 2.0)),
                    timeout=30.0)]
    define(first, "billing", [(s.name, lambda c, st: None, {"retry": s.retry,
                                                           "timeout": s.timeout})
                              for s in billing])
    define(first, "report", [("render", lambda c, s: None)])

    second = make_engine()     # a second engine and store on the same file
    assert [Step.from_dict(d) for d in second.store.load_template("billing")] == billing
    stored = second.store.load_templates()
    assert sorted(stored) == ["billing", "report"]
    assert [Step.from_dict(d) for d in stored["report"]] == [Step("render")]
    with pytest.raises(TemplateNotFound):
        second.store.load_template("missing")


def test_queue_metadata_is_persisted(make_engine: Callable[..., Engine], db_path: Path) -> None:
    engine = make_engine()
    spec = engine.create_queue("billing", workers=3, poll_interval=0.5, auto_delete=True,
                               delete_after=2.0, pop_timeout=1.0)
    other = SQLiteStore(db_path)
    try:
        assert other.load_queue("billing") == spec

        other.set_paused("billing", True)
        engine.create_queue("billing", workers=5, poll_interval=0.25)
        updated = other.load_queue("billing")
        assert (updated.workers, updated.poll_interval, updated.auto_delete) == (5, 0.25, False)
        assert updated.paused is True
        assert [q.name for q in other.load_queues()] == ["billing"]

        engine.close_queue("billing")
        with pytest.raises(QueueNotFound):
            other.load_queue("billing")
        assert other.load_queues() == []
    finally:
        other.close()
    with pytest.raises(QueueNotFound):
        engine.close_queue("billing")


def test_close_of_an_unknown_queue_raises(engine: Engine) -> None:
    with pytest.raises(QueueNotFound):
        engine.close_queue("never-created")
    assert isinstance(engine.create_queue("q"), QueueSpec)


def test_run_of_a_queued_workflow_only_enqueues(engine: Engine) -> None:
    ran: list[int] = []
    define(engine, "queued", [("work", lambda c, s: ran.append(1))])
    wf = engine.new_workflow("queued", queue="jobs", state={"k": "v"})
    returned = engine.run(wf)
    assert returned.uuid == wf.uuid and returned.status == WorkflowStatus.PENDING

    other = engine.new_workflow("queued", queue="jobs")
    fut = engine.run(other, background=True)
    assert fut.done() and fut.result().status == WorkflowStatus.PENDING

    for uuid in (wf.uuid, other.uuid):
        stored = engine.store.load_workflow(uuid)
        assert (stored.status, stored.queue, stored.current_step) == (WorkflowStatus.PENDING,
                                                                      "jobs", 0)
    assert ran == []
    assert engine.store.history(wf.uuid) == []


def test_run_in_background_returns_a_future_of_the_final_workflow(engine: Engine) -> None:
    gate = threading.Event()

    def wait_for_gate(ctx: StepContext, state: State) -> None:
        assert gate.wait(WAIT)
        state["thread"] = threading.current_thread().name

    define(engine, "bg", [("wait", wait_for_gate)])
    wf = engine.new_workflow("bg")
    fut = engine.run(wf, background=True)
    assert isinstance(fut, Future)
    assert not fut.done()       # returned at once, while the step still waits
    gate.set()
    done = fut.result(timeout=WAIT)
    assert isinstance(done, Workflow)
    assert done.uuid == wf.uuid and done.status == WorkflowStatus.COMPLETED
    assert engine.store.load_workflow(wf.uuid).state["thread"] != threading.main_thread().name


# -- resuming ------------------------------------------------------------------------------------
def _store_pending(engine: Engine, name: str, **kwargs: Any) -> Workflow:
    """Persist a workflow as pending without running it (as a restarted process finds it)."""
    wf = engine.new_workflow(name, **kwargs)
    engine.store.create_workflow(wf, json.dumps(wf.state))
    return wf


def test_resume_workflows_picks_the_right_ones(engine: Engine) -> None:
    ran: list[str] = []

    def work(ctx: StepContext, state: State) -> None:
        ran.append(state["label"])
        state["resumed"] = True

    define(engine, "resumable", [("work", work)])
    pending = _store_pending(engine, "resumable", state={"label": "pending"})
    orphan = _store_pending(engine, "resumable", state={"label": "dead-owner"})
    dead_owner = f"{socket.gethostname()}:999999:0"
    assert engine.store.claim_workflow(orphan.uuid, dead_owner, 30.0) is not None
    alive = _store_pending(engine, "resumable", state={"label": "alive-owner"})
    assert engine.store.claim_workflow(alive.uuid, identity.current(), 30.0) is not None
    queued = engine.new_workflow("resumable", queue="jobs", state={"label": "queued"})
    engine.run(queued)

    futures = engine.resume_workflows()
    results = {f.result(timeout=WAIT).uuid: f.result().status for f in futures}

    assert results == {pending.uuid: WorkflowStatus.COMPLETED,
                       orphan.uuid: WorkflowStatus.COMPLETED}
    assert sorted(ran) == ["dead-owner", "pending"]
    assert engine.store.load_workflow(alive.uuid).status == WorkflowStatus.RUNNING
    assert engine.store.load_workflow(queued.uuid).status == WorkflowStatus.PENDING
    rows = engine.store.history(orphan.uuid)
    assert [(r.step, r.outcome) for r in rows] == [("work", "interrupted"), ("work", "completed")]
    assert rows[0].worker_pid == 999999


def test_resume_continues_at_current_step(sqlite_engine: Engine, db_path: Path,
                                          make_engine: Callable[..., Engine]) -> None:
    ran: list[str] = []
    steps = [("one", lambda c, s: ran.append("one")), ("two", lambda c, s: ran.append("two"))]
    define(sqlite_engine, "two-steps", steps)
    wf = sqlite_engine.new_workflow("two-steps")
    wf.current_step = 1     # as if step one had completed before a restart
    sqlite_engine.store.create_workflow(wf, "{}")

    restarted = make_engine()
    define(restarted, "two-steps", steps)
    [fut] = restarted.resume_workflows()
    assert fut.result(timeout=WAIT).status == WorkflowStatus.COMPLETED
    assert ran == ["two"]


# -- idempotency, context ----------------------------------------------------------------------
def test_idempotency_key_prevents_charging_twice(engine: Engine) -> None:
    payments: dict[str, int] = {}     # the payment provider's side: charges by idempotency key
    keys: list[str] = []

    def charge(ctx: StepContext, state: State) -> None:
        keys.append(ctx.idempotency_key)
        if ctx.idempotency_key not in payments:
            payments[ctx.idempotency_key] = state["amount"]
        if ctx.attempt == 1:
            raise ConnectionError("response lost after the charge went through")
        state["charged"] = payments[ctx.idempotency_key]

    define(engine, "billing", [("charge", charge, {"retry": ZERO3})])
    wf = engine.new_workflow("billing", state={"amount": 42})
    engine.run(wf)
    assert keys == [f"{wf.uuid}:charge"] * 2
    assert payments == {f"{wf.uuid}:charge": 42}
    assert engine.store.load_workflow(wf.uuid).state["charged"] == 42


def test_step_context_fields(engine: Engine) -> None:
    seen: list[tuple[StepContext, float]] = []

    def record(ctx: StepContext, state: State) -> None:
        seen.append((ctx, time.monotonic()))
        ctx.log.info("custom.event", detail="hi")
        if ctx.step_name == "timed" and ctx.attempt == 1:
            raise RuntimeError("again")

    define(engine, "ctx", [("plain", record), ("timed", record, {"timeout": 5.0,
                                                                "retry": ZERO3})])
    wf = engine.new_workflow("ctx")
    with structlog.testing.capture_logs() as logs:
        engine.run(wf)

    assert [(c.step_name, c.attempt) for c, _ in seen] == [("plain", 1), ("timed", 1),
                                                           ("timed", 2)]
    assert all(c.workflow_uuid == wf.uuid for c, _ in seen)
    plain, at = seen[0]
    assert plain.deadline is None
    for ctx, at in seen[1:]:
        assert ctx.deadline is not None and 0 < ctx.deadline - at <= 5.0
    custom = [e for e in logs if e["event"] == "custom.event"]
    assert [(e["step"], e["attempt"], e["workflow_uuid"], e["detail"]) for e in custom] == [
        ("plain", 1, wf.uuid, "hi"), ("timed", 1, wf.uuid, "hi"), ("timed", 2, wf.uuid, "hi")]


# -- cancelling ----------------------------------------------------------------------------------
def test_cancel_of_a_pending_workflow_means_it_never_runs(engine: Engine) -> None:
    ran: list[int] = []
    define(engine, "cancel", [("work", lambda c, s: ran.append(1))])
    wf = _store_pending(engine, "cancel")

    assert engine.cancel(wf.uuid) == WorkflowStatus.CANCELLED
    assert engine.resume_workflows() == []
    assert engine.run(wf).status == WorkflowStatus.CANCELLED
    assert engine.store.load_workflow(wf.uuid).status == WorkflowStatus.CANCELLED
    assert ran == []
    assert engine.cancel(wf.uuid) is None      # already finished: nothing to do
    with pytest.raises(WorkflowNotFound):
        engine.cancel("00000000-0000-0000-0000-000000000000")


def test_cancel_of_a_running_workflow_stops_at_the_next_step_boundary(engine: Engine) -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def first(ctx: StepContext, state: State) -> None:
        started.set()
        assert release.wait(WAIT)
        ran.append("first")
        state["first"] = True

    define(engine, "cancel", [("first", first), ("second", lambda c, s: ran.append("second"))])
    wf = engine.new_workflow("cancel")
    with structlog.testing.capture_logs() as logs:
        fut = engine.run(wf, background=True)
        try:
            assert started.wait(WAIT)
            assert engine.cancel(wf.uuid) == WorkflowStatus.RUNNING
        finally:
            release.set()
        done = fut.result(timeout=WAIT)

    assert done.status == WorkflowStatus.CANCELLED
    assert ran == ["first"]        # the running step finished; the next never started
    latest = engine.store.load_workflow(wf.uuid)
    assert (latest.status, latest.current_step, latest.state) == (WorkflowStatus.CANCELLED, 1,
                                                                  {"first": True})
    assert outcomes(engine, wf.uuid) == [("first", 1, "completed")]
    assert any(e["event"] == "workflow.cancelled" for e in logs)


def test_cancel_during_a_backoff_wait_ends_promptly(engine: Engine) -> None:
    failed_once = threading.Event()
    calls: list[int] = []

    def flaky(ctx: StepContext, state: State) -> None:
        calls.append(ctx.attempt)
        failed_once.set()
        raise RuntimeError("try again in a minute")

    policy = RetryPolicy(max_attempts=5, backoff=backoff.constant(60.0))
    define(engine, "backoff", [("flaky", flaky, {"retry": policy})])
    wf = engine.new_workflow("backoff")
    fut = engine.run(wf, background=True)
    assert failed_once.wait(WAIT)
    cancelled_at = time.monotonic()
    assert engine.cancel(wf.uuid) == WorkflowStatus.RUNNING
    done = fut.result(timeout=WAIT)
    assert time.monotonic() - cancelled_at < 5.0
    assert done.status == WorkflowStatus.CANCELLED
    assert calls == [1]
    assert engine.store.load_workflow(wf.uuid).status == WorkflowStatus.CANCELLED


# -- misc ---------------------------------------------------------------------------------------
def test_engine_close_waits_for_background_runs(db_path: Path) -> None:
    engine = Engine(store=SQLiteStore(db_path))
    started = threading.Event()

    def slow(ctx: StepContext, state: State) -> None:
        started.set()
        time.sleep(0.3)     # a step still running when close() is called

    define(engine, "slow", [("slow", slow)])
    fut = engine.run(engine.new_workflow("slow"), background=True)
    assert started.wait(WAIT)
    engine.close()
    assert fut.done()
    assert fut.result().status == WorkflowStatus.COMPLETED
