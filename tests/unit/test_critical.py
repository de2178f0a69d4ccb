"""ewfd.critical: handlers that signals call inside a section run when it ends (issue 10, A1).

Real signals (``signal.raise_signal`` runs the handler at once, as a signal that
arrives between two bytecodes would); every test puts the handlers back.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from ewfd import StepTimeout, critical, timeouts

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM)


@pytest.fixture(autouse=True)
def handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
    assert not critical.deferring()


class HostError(Exception):
    pass


def host_handler(signum: int, frame: FrameType | None) -> None:
    raise HostError(signal.Signals(signum).name)


def test_ewfds_own_handler_runs_once_when_the_outermost_section_ends() -> None:
    calls: list[int] = []
    signal.signal(signal.SIGUSR1, critical.defers(lambda s, f: calls.append(s)))
    with critical.section():
        with critical.section():
            signal.raise_signal(signal.SIGUSR1)
            signal.raise_signal(signal.SIGUSR1)   # repeats coalesce, as the kernel's do
            assert critical.deferring()
        assert calls == []
    assert calls == [signal.SIGUSR1]
    signal.raise_signal(signal.SIGUSR1)          # outside a section: at once
    assert calls == [signal.SIGUSR1, signal.SIGUSR1]


@pytest.mark.parametrize("installed", ["default SIGINT", "host handler"])
def test_a_foreign_handler_is_held_and_put_back(installed: str) -> None:
    signum = signal.SIGINT if installed == "default SIGINT" else signal.SIGTERM
    handler = signal.default_int_handler if installed == "default SIGINT" else host_handler
    signal.signal(signum, handler)
    reached_the_end = False
    with pytest.raises((KeyboardInterrupt, HostError)), critical.section():
        signal.raise_signal(signum)
        reached_the_end = True
    assert reached_the_end
    assert signal.getsignal(signum) is handler


def test_every_held_handler_runs_and_the_last_exception_chains_the_first() -> None:
    signal.signal(signal.SIGTERM, host_handler)
    signal.signal(signal.SIGUSR2, critical.defers(host_handler))
    with pytest.raises(HostError) as caught, critical.section():
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGUSR2)
    assert str(caught.value) == "SIGUSR2"
    assert str(caught.value.__context__) == "SIGTERM"


def test_an_exception_of_the_body_is_the_context_of_a_held_one() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with pytest.raises(KeyboardInterrupt) as caught, critical.section():
        signal.raise_signal(signal.SIGINT)
        raise ValueError("the write failed")
    assert isinstance(caught.value.__context__, ValueError)


def test_a_handler_installed_by_a_held_handler_is_not_undone() -> None:
    def replace_myself(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGUSR2, host_handler)

    signal.signal(signal.SIGUSR2, replace_myself)
    with critical.section():
        signal.raise_signal(signal.SIGUSR2)
    assert signal.getsignal(signal.SIGUSR2) is host_handler


def test_a_section_off_the_main_thread_changes_nothing() -> None:
    signal.signal(signal.SIGTERM, host_handler)
    seen: list[Any] = []

    def in_thread() -> None:
        with critical.section():
            seen.append(signal.getsignal(signal.SIGTERM))
            seen.append(critical.deferring())

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(10)
    assert seen == [host_handler, False]


def test_the_step_timeout_inside_a_section_fires_at_its_end() -> None:
    after: list[str] = []

    def step() -> None:
        with critical.section():
            signal.raise_signal(signal.SIGALRM)   # the alarm, as it falls into a write
            after.append("the write went on")
        after.append("never: the timeout fired")

    with pytest.raises(StepTimeout):
        timeouts.call(step, (), 60.0)
    assert after == ["the write went on"]


def test_an_alarm_handled_as_the_step_returns_still_puts_the_handlers_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The alarm fires just as the step returns and is handled inside the clean-up: the
    step overran, so it fails, but only after SIGALRM's handler is the host's again."""
    signal.signal(signal.SIGALRM, host_handler)
    setitimer = signal.setitimer

    def alarm_first(which: int, seconds: float, interval: float = 0.0) -> Any:
        if seconds == 0:
            signal.raise_signal(signal.SIGALRM)
        return setitimer(which, seconds, interval)

    monkeypatch.setattr(signal, "setitimer", alarm_first)
    with pytest.raises(StepTimeout):
        timeouts.call(lambda: "done", (), 60.0)
    assert signal.getsignal(signal.SIGALRM) is host_handler
