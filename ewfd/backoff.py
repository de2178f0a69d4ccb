"""Retry backoff policies that survive a restart.

A workflow step may be retried after a failure, and how long to wait between
attempts is decided by a *backoff policy*.  Because ewfd is a durable engine,
the policy is part of the workflow definition that gets stored: a template
declares it, the store persists it, and a daemon that restarts (or a different
daemon picking the workflow up) must rebuild exactly the same policy.  So every
policy here is a small value object whose *parameters* round-trip through JSON
(:func:`to_dict` / :func:`from_dict`, :func:`to_json` / :func:`from_json`).
Only parameters are serialised, never the progress state: after a reload a
policy starts again from its first interval.

A template's policy is a prototype; each step run works on its own copy made by
:func:`fresh`, so one step advancing its backoff never affects another.

:func:`retry` drives an operation with a policy, and :func:`wait` is the
interruptible sleep it uses, so that a shutdown need not sit out a long backoff.
Jitter draws from the ``random`` module's shared generator (not a private
``random.Random`` instance), so a forked child that calls ``random.seed()``
gets fresh jitter instead of repeating its parent's sequence.
"""

from __future__ import annotations

import copy
import json
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = [
    "STOP",
    "Backoff",
    "Constant",
    "Exponential",
    "Permanent",
    "Stop",
    "Zero",
    "constant",
    "exponential",
    "exponential_jitter",
    "fresh",
    "from_dict",
    "from_json",
    "retry",
    "stop",
    "to_dict",
    "to_json",
    "wait",
    "zero",
]

T = TypeVar("T")

STOP: float = -1.0
"""Returned by :meth:`Backoff.next_backoff` when no further retry should be made."""


@runtime_checkable
class Backoff(Protocol):
    """A retry policy: how long to wait before the next attempt."""

    def next_backoff(self) -> float:
        """Return the seconds to wait before the next attempt, or :data:`STOP`."""
        ...

    def reset(self) -> None:
        """Return to the initial state (as before the first attempt)."""
        ...


# --------------------------------------------------------------------------- validation


def _number(name: str, value: object) -> float:
    """Return ``value`` as a finite float, or raise ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return result


def _interval(name: str, value: object) -> float:
    result = _number(name, value)
    if result < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return result


# --------------------------------------------------------------------------- policies


class Constant:
    """Always wait the same ``interval``."""

    __slots__ = ("_interval",)

    def __init__(self, interval: float) -> None:
        self._interval = _interval("interval", interval)

    @property
    def interval(self) -> float:
        return self._interval

    def next_backoff(self) -> float:
        return self._interval

    def reset(self) -> None:
        pass

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Constant):
            return NotImplemented
        return self._interval == other._interval

    def __hash__(self) -> int:
        return hash(("constant", self._interval))

    def __repr__(self) -> str:
        return f"Constant(interval={self._interval!r})"


class Exponential:
    """Start at ``initial``, multiply by ``multiplier`` each time, cap at ``max_interval``.

    With ``jitter`` j > 0 each returned value is drawn uniformly from
    ``[cur * (1 - j), cur * (1 + j)]`` and then capped at ``max_interval``; the
    un-jittered current interval ``cur`` is what grows.
    """

    __slots__ = ("_current", "_initial", "_jitter", "_max_interval", "_multiplier")

    def __init__(
        self,
        initial: float,
        max_interval: float,
        multiplier: float,
        jitter: float = 0.0,
    ) -> None:
        self._initial = _interval("initial", initial)
        self._max_interval = _interval("max_interval", max_interval)
        self._multiplier = _number("multiplier", multiplier)
        self._jitter = _number("jitter", jitter)
        if self._multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {multiplier!r}")
        if not 0 <= self._jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {jitter!r}")
        if self._max_interval < self._initial:
            raise ValueError(f"max_interval ({max_interval!r}) must be >= initial ({initial!r})")
        self._current = self._initial

    @property
    def initial(self) -> float:
        return self._initial

    @property
    def max_interval(self) -> float:
        return self._max_interval

    @property
    def multiplier(self) -> float:
        return self._multiplier

    @property
    def jitter(self) -> float:
        return self._jitter

    def next_backoff(self) -> float:
        cur = self._current
        self._current = min(cur * self._multiplier, self._max_interval)
        if self._jitter == 0:
            return cur
        value = random.uniform(cur * (1 - self._jitter), cur * (1 + self._jitter))
        return max(0.0, min(value, self._max_interval))

    def reset(self) -> None:
        self._current = self._initial

    def _params(self) -> tuple[float, float, float, float]:
        return (self._initial, self._max_interval, self._multiplier, self._jitter)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Exponential):
            return NotImplemented
        return self._params() == other._params()

    def __hash__(self) -> int:
        return hash(("exponential", *self._params()))

    def __repr__(self) -> str:
        return (
            f"Exponential(initial={self._initial!r}, max_interval={self._max_interval!r}, "
            f"multiplier={self._multiplier!r}, jitter={self._jitter!r})"
        )


class Zero:
    """Retry at once, forever."""

    __slots__ = ()

    def next_backoff(self) -> float:
        return 0.0

    def reset(self) -> None:
        pass

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Zero):
            return NotImplemented
        return True

    def __hash__(self) -> int:
        return hash("zero")

    def __repr__(self) -> str:
        return "Zero()"


class Stop:
    """Never retry."""

    __slots__ = ()

    def next_backoff(self) -> float:
        return STOP

    def reset(self) -> None:
        pass

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Stop):
            return NotImplemented
        return True

    def __hash__(self) -> int:
        return hash("stop")

    def __repr__(self) -> str:
        return "Stop()"


# --------------------------------------------------------------------------- factories


def constant(interval: float) -> Constant:
    """Wait ``interval`` seconds between every attempt."""
    return Constant(interval)


def exponential(initial: float, max_interval: float, multiplier: float) -> Exponential:
    """Wait ``initial``, then ``initial * multiplier``, ... capped at ``max_interval``."""
    return Exponential(initial, max_interval, multiplier, 0.0)


def exponential_jitter(
    initial: float, max_interval: float, multiplier: float, jitter: float
) -> Exponential:
    """Like :func:`exponential`, each value randomised by +/- ``jitter`` (a fraction)."""
    return Exponential(initial, max_interval, multiplier, jitter)


def zero() -> Zero:
    """Retry immediately, without limit."""
    return Zero()


def stop() -> Stop:
    """Never retry."""
    return Stop()


# --------------------------------------------------------------------------- serialisation


_FIELDS: dict[str, tuple[str, ...]] = {
    "constant": ("interval",),
    "exponential": ("initial", "max_interval", "multiplier", "jitter"),
    "zero": (),
    "stop": (),
}


def to_dict(b: Backoff) -> dict[str, Any]:
    """Return the JSON-ready parameters of ``b`` (not its progress state).

    Raises TypeError if ``b`` is not one of this module's policies.
    """
    if isinstance(b, Constant):
        return {"type": "constant", "interval": b.interval}
    if isinstance(b, Exponential):
        return {
            "type": "exponential",
            "initial": b.initial,
            "max_interval": b.max_interval,
            "multiplier": b.multiplier,
            "jitter": b.jitter,
        }
    if isinstance(b, Zero):
        return {"type": "zero"}
    if isinstance(b, Stop):
        return {"type": "stop"}
    raise TypeError(f"cannot serialise backoff policy of type {type(b).__name__}")


def from_dict(d: Mapping[str, Any]) -> Backoff:
    """Build a policy from the output of :func:`to_dict`, at its initial state.

    Raises ValueError on an unknown type or missing, unexpected or invalid fields.
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"backoff policy must be an object, got {type(d).__name__}")
    if "type" not in d:
        raise ValueError("backoff policy has no 'type' field")
    kind = d["type"]
    if not isinstance(kind, str):
        raise ValueError(f"backoff policy 'type' must be a string, got {type(kind).__name__}")
    if kind not in _FIELDS:
        known = ", ".join(sorted(_FIELDS))
        raise ValueError(f"unknown backoff policy type {kind!r} (known: {known})")
    fields = _FIELDS[kind]
    missing = [f for f in fields if f not in d]
    if missing:
        raise ValueError(f"{kind} backoff policy is missing field(s): {', '.join(missing)}")
    extra = sorted(str(k) for k in d if k != "type" and k not in fields)
    if extra:
        raise ValueError(f"{kind} backoff policy has unexpected field(s): {', '.join(extra)}")
    try:
        values = [_number(f, d[f]) for f in fields]
        if kind == "constant":
            return Constant(*values)
        if kind == "exponential":
            return Exponential(*values)
    except ValueError as exc:
        raise ValueError(f"invalid {kind} backoff policy: {exc}") from None
    if kind == "zero":
        return Zero()
    return Stop()


def to_json(b: Backoff) -> str:
    """Serialise ``b``'s parameters as a JSON string (TypeError if unknown policy)."""
    return json.dumps(to_dict(b), allow_nan=False)


def from_json(s: str) -> Backoff:
    """Parse a policy from :func:`to_json` output (ValueError if invalid)."""
    try:
        data = json.loads(s)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"backoff policy is not valid JSON: {exc}") from None
    return from_dict(data)


def fresh(b: Backoff) -> Backoff:
    """Return an independent copy of ``b`` at its initial state.

    A template's policy is a prototype; each step run should use its own copy.
    """
    if isinstance(b, Constant | Exponential | Zero | Stop):
        return from_dict(to_dict(b))
    clone = copy.deepcopy(b)
    clone.reset()
    return clone


# --------------------------------------------------------------------------- retrying


class Permanent(Exception):
    """Wrap an error to tell :func:`retry` not to retry; it re-raises ``.err``."""

    def __init__(self, err: BaseException) -> None:
        super().__init__(err)
        self.err = err

    def __str__(self) -> str:
        return str(self.err)


def wait(seconds: float, stop: threading.Event | None = None) -> bool:
    """Sleep up to ``seconds``; return True as soon as ``stop`` is set, else False.

    ``seconds <= 0`` returns at once (True if ``stop`` is already set).
    """
    if not seconds > 0:  # also catches NaN
        return stop is not None and stop.is_set()
    seconds = min(seconds, threading.TIMEOUT_MAX)
    if stop is None:
        time.sleep(seconds)
        return False
    return stop.wait(seconds)


def retry(
    operation: Callable[[], T],
    b: Backoff,
    notify: Callable[[BaseException, float], None] | None = None,
    *,
    stop: threading.Event | None = None,
) -> T:
    """Call ``operation`` until it succeeds, waiting between attempts as ``b`` says.

    ``b`` is reset first.  A :class:`Permanent` error stops at once and its
    wrapped error is raised.  When ``b`` returns :data:`STOP`, or the wait is
    interrupted by ``stop``, the last error is raised.  ``notify(err, delay)``
    is called before each wait.
    """
    b.reset()
    while True:
        try:
            return operation()
        except Permanent as p:
            raise p.err from None
        except Exception as exc:
            delay = b.next_backoff()
            if delay == STOP:
                raise
            if notify is not None:
                notify(exc, delay)
            if wait(delay, stop):
                raise
