"""Per-attempt timeouts for sync and async steps.

A step in a process's main thread is interrupted with SIGALRM, whose handler
raises :class:`StepTimeout` inside it (PEP 475 does not retry a ``sleep`` or
socket read whose handler raised); an async step is cancelled by
``asyncio.wait_for`` as well, and the alarm also covers one that blocks its
event loop. Off the main thread nothing can interrupt a Python call safely, so
the overrun is detected when the step returns. Whatever happened inside, an
attempt that took longer than its timeout never counts as a success: a step
that swallowed ``StepTimeout``, or async code that blocked its loop, still
fails with ``timed out after``.
"""

from __future__ import annotations

import inspect
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

from . import critical
from .errors import StepTimeout


def _message(timeout: float) -> str:
    return f"timed out after {timeout:g}s"


def can_interrupt() -> bool:
    """True where a sync step can be interrupted: the main thread, on a platform with SIGALRM."""
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")


def call(fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None) -> Any:
    """Call ``fn(*args)`` (sync or async) and raise StepTimeout when it overruns ``timeout``."""
    if timeout is None:
        return _call(fn, args, None)
    start = time.monotonic()
    interrupted = can_interrupt()
    if interrupted:
        result = _call_with_alarm(_call, (fn, args, timeout, start), timeout)
    else:
        result = _call(fn, args, timeout, start)
    if time.monotonic() - start > timeout:   # finished, but too late: never a success
        where = "the step caught the interruption" if interrupted else "not in the main thread"
        raise StepTimeout(f"{_message(timeout)} (detected on return: {where})")
    return result


def _call(fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None,
          start: float = 0.0) -> Any:
    """Run a sync step, or an async one (or a sync one returning an awaitable) to its end;
    the coroutine gets what is left of the ``timeout`` that began at ``start``."""
    result = fn(*args)
    if inspect.isawaitable(result):
        return _run_async(result, timeout, start)
    return result


def _call_with_alarm(fn: Callable[..., Any], args: tuple[Any, ...], timeout: float) -> Any:
    running, late = True, False

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        nonlocal late
        if running:
            raise StepTimeout(_message(timeout))
        late = True   # fired as the step returned: raised below, once the handlers are back

    # critical.defers: inside a store write (the step's own engine.run, say) the timeout
    # waits for the COMMIT instead of leaving the transaction open.
    previous = signal.signal(signal.SIGALRM, critical.defers(on_alarm))
    start = time.monotonic()
    outer, outer_interval = signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        result = fn(*args)
    finally:
        running = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer > 0:   # the host program's own timer (pytest-timeout, say): give it back
            left = max(outer - (time.monotonic() - start), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)
    if late:
        raise StepTimeout(_message(timeout))
    return result


def _run_async(awaitable: Awaitable[Any], timeout: float | None, start: float) -> Any:
    """Run ``awaitable`` in a new event loop, cancelled ``timeout`` seconds after ``start``."""
    import asyncio  # only async steps pay for importing it

    left = None if timeout is None else start + timeout - time.monotonic()
    if left is not None and left <= 0:   # the sync part used the whole budget
        close = getattr(awaitable, "close", None)
        if close is not None:
            close()   # never awaited: close it, or Python warns about it
        raise StepTimeout(_message(timeout or 0.0))

    async def runner() -> Any:
        try:
            return await asyncio.wait_for(awaitable, left)
        except TimeoutError:
            raise StepTimeout(_message(timeout or 0.0)) from None

    return asyncio.run(runner())
