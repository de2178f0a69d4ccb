"""Progress of a long step: ``ctx.progress(fraction, message)``, cheap enough for any loop.

Every call updates the value in memory and, under the daemon, the worker's slot of
the scoreboard (shared memory the supervisor reads for ``ewfd ctl workers``). What
costs more is rate-limited: the ``step.progress`` log line and the store write (the
workflow row ``ewfd ctl show`` reads) go out at once for the first report, then at
most once per second per step, and the latest value always goes out once its second
is over. One background thread per process does that publishing, so a step never
waits for the database in ``ctx.progress``.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import threading
import time
from collections.abc import Callable
from numbers import Real
from typing import Protocol

from . import liblog
from .codec import safe_text

INTERVAL = 1.0        # seconds between two publishes of one step's progress
MESSAGE_MAX = 200     # characters of a message that are kept

Publish = Callable[[float, str | None], None]


def check(fraction: object, message: object) -> tuple[float, str | None]:
    """The report as stored, or TypeError/ValueError saying what a step got wrong."""
    if isinstance(fraction, bool) or not isinstance(fraction, Real):
        raise TypeError("ctx.progress: fraction must be a number between 0 and 1, got "
                        f"{fraction!r}")
    value = float(fraction)
    if not 0.0 <= value <= 1.0:      # NaN fails this too
        raise ValueError("ctx.progress: fraction must be between 0 and 1 (0.25 = a quarter "
                         f"done), got {fraction!r}")
    if message is None:
        return value, None
    if not isinstance(message, str):
        raise TypeError(f"ctx.progress: message must be a string or None, got {message!r:.60}")
    return value, safe_text(message[:MESSAGE_MAX])[:MESSAGE_MAX]


class RateLimit:
    """When to publish a stream of values: the first at once, then at most one per
    ``interval``, and the latest value at the end of its interval (none is left behind)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last = -math.inf       # when the last publish happened
        self.due: float | None = None

    def offer(self, now: float) -> float | None:
        """A new value at ``now``: when to publish it, or None when a publish is already
        planned (it will carry this value)."""
        if self.due is not None:
            return None
        self.due = max(now, self.last + self.interval)
        return self.due

    def published(self, now: float) -> None:
        self.last, self.due = now, None


class Scheduler(Protocol):
    def schedule(self, when: float, fn: Callable[[], None]) -> None: ...


class ProgressReporter:
    """The progress of one attempt of one step (``StepContext.progress`` calls
    :meth:`report`). ``on_change`` runs on every report (keep it as cheap as a memory
    write); ``publish`` at the rate limit, from the scheduler's thread."""

    def __init__(self, *, publish: Publish | None = None, on_change: Publish | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 scheduler: Scheduler | None = None, interval: float = INTERVAL) -> None:
        self.fraction: float | None = None
        self.message: str | None = None
        self._publish = publish
        self._on_change = on_change
        self._clock = clock
        self._scheduler = scheduler
        self._rate = RateLimit(interval)
        self._closed = False
        self._lock = threading.Lock()           # the value and the plan; never held long
        self._writing = threading.Lock()        # held while a publish runs

    def report(self, fraction: float, message: str | None = None) -> None:
        value, text = check(fraction, message)
        with self._lock:
            self.fraction, self.message = value, text
            if self._closed:     # a thread the step left behind: the slot is the next step's
                return
            if self._on_change is not None:
                self._on_change(value, text)
            if self._publish is None:
                return
            due = self._rate.offer(self._clock())
        if due is not None:
            (self._scheduler or publisher()).schedule(due, self._flush)

    def _flush(self) -> None:
        assert self._publish is not None
        with self._writing:
            with self._lock:
                if self._closed:
                    return
                value, text = self.fraction, self.message
                self._rate.published(self._clock())
            if value is not None:
                self._publish(value, text)

    def close(self) -> None:
        """The attempt is over: publish nothing more, and return only once a publish in
        flight has ended (so it cannot land after the step's outcome is saved)."""
        # A timeout (StepTimeout, raised by a signal handler) cutting a report short could
        # in theory leave _lock held: never wait for it forever.
        locked = self._lock.acquire(timeout=1.0)
        self._closed = True
        if locked:
            self._lock.release()
        with self._writing:     # only the publisher thread takes it: signals never cut it
            pass


class Publisher:
    """Runs planned publishes at their time, in one daemon thread started on first use."""

    def __init__(self) -> None:
        self._plan: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def schedule(self, when: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._plan, (when, next(self._order), fn))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ewfd-progress",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._plan or self._plan[0][0] > time.monotonic():
                    self._cond.wait(self._plan[0][0] - time.monotonic() if self._plan else None)
                _, _, fn = heapq.heappop(self._plan)
            try:
                fn()
            except Exception as exc:   # a publish must never end the thread
                liblog.get_logger().warning("step.progress_failed", error=str(exc))


_publisher: Publisher | None = None
_publisher_lock = threading.Lock()


def publisher() -> Publisher:
    """This process's publisher, started on first use."""
    global _publisher
    with _publisher_lock:
        if _publisher is None:
            _publisher = Publisher()
        return _publisher


def _forget_after_fork() -> None:
    """Threads do not cross fork: a child starts its own publisher when it needs one."""
    global _publisher, _publisher_lock
    _publisher, _publisher_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
