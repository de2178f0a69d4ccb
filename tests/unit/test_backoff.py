"""Unit tests for ewfd.backoff."""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ewfd import backoff
from ewfd.backoff import (
    STOP,
    Backoff,
    Constant,
    Exponential,
    Permanent,
    Stop,
    Zero,
    constant,
    exponential,
    exponential_jitter,
    fresh,
    from_dict,
    from_json,
    retry,
    to_dict,
    to_json,
    wait,
    zero,
)


def take(b: Backoff, n: int) -> list[float]:
    return [b.next_backoff() for _ in range(n)]


@pytest.fixture
def restore_random() -> Iterator[None]:
    state = random.getstate()
    yield
    random.setstate(state)


class Limited:
    """A custom Backoff (not serialisable): ``n`` retries of ``delay``, then STOP."""

    def __init__(self, n: int, delay: float = 0.0) -> None:
        self.n = n
        self.delay = delay
        self.used = 0

    def next_backoff(self) -> float:
        if self.used >= self.n:
            return STOP
        self.used += 1
        return self.delay

    def reset(self) -> None:
        self.used = 0


# --------------------------------------------------------------------------- policies


def test_stop_constant_value() -> None:
    assert STOP == -1.0
    assert isinstance(STOP, float)


def test_constant_returns_interval_every_time() -> None:
    b = constant(2.5)
    assert take(b, 5) == [2.5] * 5
    b.reset()
    assert b.next_backoff() == 2.5


def test_constant_accepts_int_and_stores_float() -> None:
    b = constant(3)
    value = b.next_backoff()
    assert value == 3.0
    assert isinstance(value, float)


def test_exponential_sequence_and_cap() -> None:
    b = exponential(0.5, 10.0, 2.0)
    assert take(b, 8) == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_exponential_multiplier_one_is_constant() -> None:
    assert take(exponential(1.5, 10.0, 1.0), 4) == [1.5] * 4


def test_exponential_zero_initial_stays_zero() -> None:
    assert take(exponential(0.0, 5.0, 3.0), 3) == [0.0, 0.0, 0.0]


def test_exponential_cap_not_a_multiple() -> None:
    assert take(exponential(1.0, 5.0, 3.0), 4) == [1.0, 3.0, 5.0, 5.0]


def test_exponential_reset_returns_to_initial() -> None:
    b = exponential(1.0, 100.0, 3.0)
    assert take(b, 3) == [1.0, 3.0, 9.0]
    b.reset()
    assert take(b, 3) == [1.0, 3.0, 9.0]


def test_exponential_huge_cap_does_not_overflow() -> None:
    b = exponential(1e300, 1e308, 1e10)
    assert take(b, 3) == [1e300, 1e308, 1e308]


def test_plain_exponential_has_zero_jitter() -> None:
    b = exponential(1.0, 2.0, 2.0)
    assert isinstance(b, Exponential)
    assert b.jitter == 0.0


def test_jitter_bounds_and_spread() -> None:
    b = exponential_jitter(1.0, 100.0, 2.0, 0.5)
    firsts = []
    thirds = []
    for _ in range(500):
        b.reset()
        seq = take(b, 3)
        firsts.append(seq[0])
        thirds.append(seq[2])
    assert all(0.5 <= v <= 1.5 for v in firsts)
    # the un-jittered interval grows: the third value is around 4.0
    assert all(2.0 <= v <= 6.0 for v in thirds)
    assert len(set(firsts)) > 100
    # values use the range, not only a corner of it
    assert min(firsts) < 0.6
    assert max(firsts) > 1.4


def test_jitter_capped_at_max_interval() -> None:
    b = exponential_jitter(8.0, 10.0, 2.0, 0.5)
    values = take(b, 300)
    assert values[0] <= 10.0
    assert all(0.0 <= v <= 10.0 for v in values)
    assert 10.0 in values  # cur=10 jittered up to <= 15, capped at 10
    assert min(values[1:]) >= 5.0


def test_full_jitter_never_negative() -> None:
    b = exponential_jitter(1.0, 1.0, 1.0, 1.0)
    values = take(b, 500)
    assert all(0.0 <= v <= 1.0 for v in values)
    assert len(set(values)) > 100


def test_jitter_uses_module_random(restore_random: None) -> None:
    b = exponential_jitter(1.0, 100.0, 2.0, 0.5)
    random.seed(1234)
    first = take(b, 5)
    b.reset()
    random.seed(1234)
    second = take(b, 5)
    b.reset()
    random.seed(4321)
    third = take(b, 5)
    assert first == second
    assert first != third


def test_zero_and_stop() -> None:
    z = zero()
    assert take(z, 3) == [0.0, 0.0, 0.0]
    z.reset()
    assert z.next_backoff() == 0.0
    s = backoff.stop()
    assert take(s, 3) == [STOP, STOP, STOP]
    s.reset()
    assert s.next_backoff() == STOP


@pytest.mark.parametrize(
    "b",
    [constant(1.0), exponential(1.0, 2.0, 2.0), exponential_jitter(1, 2, 2, 0.1), zero()],
    ids=repr,
)
def test_policies_satisfy_protocol(b: Backoff) -> None:
    assert isinstance(b, Backoff)
    assert isinstance(backoff.stop(), Backoff)
    assert isinstance(Limited(1), Backoff)
    assert not isinstance(object(), Backoff)


def test_equality_and_hash_are_by_parameters() -> None:
    assert constant(1.0) == constant(1) == Constant(1.0)
    assert constant(1.0) != constant(2.0)
    assert exponential(1, 10, 2) == Exponential(1.0, 10.0, 2.0, 0.0)
    assert exponential(1, 10, 2) != exponential_jitter(1, 10, 2, 0.1)
    assert exponential(1, 10, 2) != exponential(1, 10, 3)
    assert zero() == Zero()
    assert backoff.stop() == Stop()
    assert zero() != backoff.stop()
    assert constant(0.0) != zero()
    assert constant(1.0) != "constant"
    # progress state does not affect equality
    a, b = exponential(1, 10, 2), exponential(1, 10, 2)
    a.next_backoff()
    assert a == b
    assert len({constant(1.0), constant(1), zero(), Zero()}) == 2


def test_reprs_are_readable() -> None:
    assert repr(constant(2)) == "Constant(interval=2.0)"
    assert repr(exponential_jitter(0.5, 10, 2, 0.25)) == (
        "Exponential(initial=0.5, max_interval=10.0, multiplier=2.0, jitter=0.25)"
    )
    assert repr(zero()) == "Zero()"
    assert repr(backoff.stop()) == "Stop()"


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: constant(-1.0), "interval must be >= 0"),
        (lambda: constant(math.inf), "interval must be finite"),
        (lambda: constant(math.nan), "interval must be finite"),
        (lambda: constant("2"), "interval must be a number"),  # type: ignore[arg-type]
        (lambda: constant(True), "interval must be a number"),
        (lambda: exponential(-0.1, 1.0, 2.0), "initial must be >= 0"),
        (lambda: exponential(1.0, math.inf, 2.0), "max_interval must be finite"),
        (lambda: exponential(1.0, -1.0, 2.0), "max_interval must be >= 0"),
        (lambda: exponential(2.0, 1.0, 2.0), r"max_interval \(1.0\) must be >= initial"),
        (lambda: exponential(1.0, 2.0, 0.5), "multiplier must be >= 1"),
        (lambda: exponential(1.0, 2.0, math.inf), "multiplier must be finite"),
        (lambda: exponential_jitter(1.0, 2.0, 2.0, -0.1), "jitter must be between 0 and 1"),
        (lambda: exponential_jitter(1.0, 2.0, 2.0, 1.5), "jitter must be between 0 and 1"),
        (lambda: exponential_jitter(1.0, 2.0, 2.0, math.nan), "jitter must be finite"),
    ],
)
def test_validation_errors(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_validation_boundaries_are_accepted() -> None:
    constant(0)
    exponential(0, 0, 1)
    exponential(2, 2, 1)
    exponential_jitter(1, 2, 2, 0)
    exponential_jitter(1, 2, 2, 1)


# --------------------------------------------------------------------------- serialisation


@pytest.mark.parametrize(
    ("b", "expected"),
    [
        (constant(2), {"type": "constant", "interval": 2.0}),
        (
            exponential(0.5, 10, 2),
            {
                "type": "exponential",
                "initial": 0.5,
                "max_interval": 10.0,
                "multiplier": 2.0,
                "jitter": 0.0,
            },
        ),
        (
            exponential_jitter(1, 30, 1.5, 0.2),
            {
                "type": "exponential",
                "initial": 1.0,
                "max_interval": 30.0,
                "multiplier": 1.5,
                "jitter": 0.2,
            },
        ),
        (zero(), {"type": "zero"}),
        (backoff.stop(), {"type": "stop"}),
    ],
    ids=repr,
)
def test_json_round_trip(b: Backoff, expected: dict[str, Any]) -> None:
    assert to_dict(b) == expected
    text = to_json(b)
    assert json.loads(text) == expected
    reloaded = from_json(text)
    assert type(reloaded) is type(b)
    assert reloaded == b
    assert from_dict(expected) == b
    assert to_dict(reloaded) == expected


def test_reloaded_exponential_produces_same_sequence() -> None:
    b = exponential(0.25, 5.0, 3.0)
    b.next_backoff()
    b.next_backoff()  # progress is not serialised
    reloaded = from_json(to_json(b))
    b.reset()
    expected = take(b, 6)
    assert expected == [0.25, 0.75, 2.25, 5.0, 5.0, 5.0]
    assert take(reloaded, 6) == expected


def test_from_dict_accepts_ints() -> None:
    b = from_dict(
        {"type": "exponential", "initial": 1, "max_interval": 8, "multiplier": 2, "jitter": 0}
    )
    assert take(b, 5) == [1.0, 2.0, 4.0, 8.0, 8.0]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[]", "must be an object"),
        ("null", "must be an object"),
        ('"constant"', "must be an object"),
        ("{}", "no 'type' field"),
        ('{"interval": 1}', "no 'type' field"),
        ('{"type": 3}', "'type' must be a string"),
        ('{"type": "linear"}', "unknown backoff policy type 'linear'"),
        ('{"type": "constant"}', "missing field.*interval"),
        (
            '{"type": "exponential", "initial": 1, "max_interval": 2, "multiplier": 2}',
            "missing field.*jitter",
        ),
        ('{"type": "constant", "interval": "2"}', "interval must be a number"),
        ('{"type": "constant", "interval": true}', "interval must be a number"),
        ('{"type": "constant", "interval": null}', "interval must be a number"),
        ('{"type": "constant", "interval": -1}', "interval must be >= 0"),
        ('{"type": "constant", "interval": NaN}', "interval must be finite"),
        ('{"type": "constant", "interval": Infinity}', "interval must be finite"),
        ('{"type": "constant", "interval": 1, "extra": 2}', "unexpected field.*extra"),
        ('{"type": "zero", "interval": 1}', "unexpected field.*interval"),
        (
            '{"type": "exponential", "initial": 2, "max_interval": 1, "multiplier": 2, '
            '"jitter": 0}',
            "max_interval.*must be >= initial",
        ),
        (
            '{"type": "exponential", "initial": 1, "max_interval": 2, "multiplier": 2, '
            '"jitter": 2}',
            "jitter must be between 0 and 1",
        ),
    ],
)
def test_from_json_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        from_json(text)


def test_from_dict_rejects_non_mapping() -> None:
    with pytest.raises(ValueError, match="must be an object"):
        from_dict([("type", "zero")])  # type: ignore[arg-type]


def test_to_json_of_unknown_object_raises_type_error() -> None:
    with pytest.raises(TypeError, match="Limited"):
        to_json(Limited(3))
    with pytest.raises(TypeError):
        to_dict(object())  # type: ignore[arg-type]


# --------------------------------------------------------------------------- fresh


def test_fresh_copies_are_independent() -> None:
    template = exponential(1.0, 100.0, 2.0)
    a = fresh(template)
    b = fresh(template)
    assert a is not template and b is not a
    assert a == template
    assert take(a, 3) == [1.0, 2.0, 4.0]
    # advancing a advanced neither b nor the template
    assert b.next_backoff() == 1.0
    assert template.next_backoff() == 1.0


def test_fresh_starts_at_initial_state() -> None:
    template = exponential(1.0, 100.0, 2.0)
    take(template, 4)
    copy_ = fresh(template)
    assert copy_.next_backoff() == 1.0
    assert template.next_backoff() == 16.0


@pytest.mark.parametrize(
    "b", [constant(1), zero(), backoff.stop(), exponential_jitter(1, 2, 2, 0.5)], ids=repr
)
def test_fresh_preserves_type_and_parameters(b: Backoff) -> None:
    c = fresh(b)
    assert c is not b
    assert type(c) is type(b)
    assert c == b


def test_fresh_of_custom_policy_deep_copies_and_resets() -> None:
    template = Limited(2, 0.0)
    template.next_backoff()
    c = fresh(template)
    assert isinstance(c, Limited) and c is not template
    assert take(c, 3) == [0.0, 0.0, STOP]
    assert template.used == 1


# --------------------------------------------------------------------------- Permanent


def test_permanent_wraps_error() -> None:
    inner = ValueError("bad input")
    p = Permanent(inner)
    assert p.err is inner
    assert str(p) == "bad input"
    assert isinstance(p, Exception)


# --------------------------------------------------------------------------- wait


def test_wait_zero_or_negative_returns_at_once() -> None:
    start = time.monotonic()
    assert wait(0) is False
    assert wait(-5) is False
    assert wait(math.nan) is False
    assert wait(0, threading.Event()) is False
    assert time.monotonic() - start < 0.05


def test_wait_zero_with_stop_already_set_reports_stop() -> None:
    ev = threading.Event()
    ev.set()
    assert wait(0, ev) is True


def test_wait_sleeps_full_time_without_stop() -> None:
    start = time.monotonic()
    assert wait(0.03) is False
    assert time.monotonic() - start >= 0.03


def test_wait_times_out_when_stop_not_set() -> None:
    start = time.monotonic()
    assert wait(0.03, threading.Event()) is False
    assert time.monotonic() - start >= 0.025


def test_wait_returns_immediately_if_stop_already_set() -> None:
    ev = threading.Event()
    ev.set()
    start = time.monotonic()
    assert wait(10.0, ev) is True
    assert time.monotonic() - start < 1.0


def test_wait_interrupted_from_another_thread() -> None:
    ev = threading.Event()
    timer = threading.Timer(0.05, ev.set)
    start = time.monotonic()
    timer.start()
    try:
        assert wait(10.0, ev) is True
    finally:
        timer.cancel()
    elapsed = time.monotonic() - start
    assert elapsed < 2.0
    assert elapsed >= 0.04


def test_wait_infinite_is_interruptible() -> None:
    ev = threading.Event()
    timer = threading.Timer(0.05, ev.set)
    timer.start()
    try:
        assert wait(math.inf, ev) is True
    finally:
        timer.cancel()


# --------------------------------------------------------------------------- retry


class Flaky:
    """Fails ``failures`` times (with distinct errors), then returns ``result``."""

    def __init__(self, failures: int, result: str = "ok") -> None:
        self.failures = failures
        self.result = result
        self.calls = 0
        self.raised: list[Exception] = []

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            err = RuntimeError(f"failure {self.calls}")
            self.raised.append(err)
            raise err
        return self.result


def test_retry_returns_at_once_on_success() -> None:
    notes: list[tuple[BaseException, float]] = []
    assert retry(lambda: 42, backoff.stop(), lambda e, d: notes.append((e, d))) == 42
    assert notes == []


def test_retry_succeeds_after_failures_and_notifies_with_delays() -> None:
    op = Flaky(3)
    notes: list[tuple[BaseException, float]] = []
    result = retry(op, exponential(0.001, 0.004, 2.0), lambda e, d: notes.append((e, d)))
    assert result == "ok"
    assert op.calls == 4
    assert [d for _, d in notes] == [0.001, 0.002, 0.004]
    assert [e for e, _ in notes] == op.raised


def test_retry_resets_backoff_first() -> None:
    b = exponential(0.001, 1.0, 10.0)
    take(b, 3)  # would now return 0.1 without a reset
    delays: list[float] = []
    retry(Flaky(2), b, lambda e, d: delays.append(d))
    assert delays == [0.001, 0.01]


def test_retry_without_notify() -> None:
    op = Flaky(5)
    assert retry(op, zero()) == "ok"
    assert op.calls == 6


def test_retry_exhausted_by_stop_raises_original_exception() -> None:
    op = Flaky(10)
    notes: list[tuple[BaseException, float]] = []
    with pytest.raises(RuntimeError) as info:
        retry(op, backoff.stop(), lambda e, d: notes.append((e, d)))
    assert info.value is op.raised[0]
    assert op.calls == 1
    assert notes == []


def test_retry_exhausted_raises_last_exception() -> None:
    op = Flaky(10)
    with pytest.raises(RuntimeError, match="failure 3") as info:
        retry(op, Limited(2))
    assert info.value is op.raised[-1]
    assert op.calls == 3


def test_retry_permanent_stops_at_once_and_raises_wrapped() -> None:
    inner = KeyError("missing")
    calls = 0

    def op() -> None:
        nonlocal calls
        calls += 1
        raise Permanent(inner)

    notes: list[tuple[BaseException, float]] = []
    with pytest.raises(KeyError) as info:
        retry(op, zero(), lambda e, d: notes.append((e, d)))
    assert info.value is inner
    assert calls == 1
    assert notes == []
    assert info.value.__suppress_context__


def test_retry_permanent_after_transient_failures() -> None:
    calls = 0

    def op() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise OSError("transient")
        raise Permanent(ValueError("fatal"))

    with pytest.raises(ValueError, match="fatal"):
        retry(op, zero())
    assert calls == 3


def test_retry_does_not_catch_base_exceptions() -> None:
    calls = 0

    def op() -> None:
        nonlocal calls
        calls += 1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        retry(op, zero())
    assert calls == 1


def test_retry_interrupted_during_long_backoff() -> None:
    op = Flaky(100)
    ev = threading.Event()
    notes: list[float] = []
    timer = threading.Timer(0.05, ev.set)
    start = time.monotonic()
    timer.start()
    try:
        with pytest.raises(RuntimeError) as info:
            retry(op, constant(10.0), lambda e, d: notes.append(d), stop=ev)
    finally:
        timer.cancel()
    assert time.monotonic() - start < 2.0
    assert op.calls == 1
    assert info.value is op.raised[0]
    assert notes == [10.0]


def test_retry_with_zero_backoff_stops_when_event_set() -> None:
    ev = threading.Event()
    calls = 0

    def op() -> None:
        nonlocal calls
        calls += 1
        if calls == 5:
            ev.set()
        raise RuntimeError(f"failure {calls}")

    with pytest.raises(RuntimeError, match="failure 5"):
        retry(op, zero(), stop=ev)
    assert calls == 5
