"""Per-attempt timeouts for sync and async steps.

A sync step in a process's main thread is interrupted with SIGALRM, whose
handler raises :class:`StepTimeout` inside the step (PEP 475 does not retry a
``sleep`` or socket read whose handler raised). Off the main thread nothing can
interrupt a Python call safely, so the overrun is detected when the step
returns. An async step is cancelled by ``asyncio.wait_for``.
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


_ASYNC: dict[Callable[..., Any], bool] = {}


def _is_async(fn: Callable[..., Any]) -> bool:
    """``inspect.iscoroutinefunction``, remembered: it is asked before every attempt."""
    try:
        return _ASYNC[fn]
    except KeyError:
        result = _ASYNC[fn] = inspect.iscoroutinefunction(fn)
        return result
    except TypeError:   # an unhashable callable
        return inspect.iscoroutinefunction(fn)


def call(fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None) -> Any:
    """Call ``fn(*args)`` (sync or async) and raise StepTimeout when it overruns ``timeout``."""
    if _is_async(fn):
        return _run_async(fn(*args), timeout)
    if timeout is None:
        result = fn(*args)
    elif can_interrupt():
        result = _call_with_alarm(fn, args, timeout)
    else:
        start = time.monotonic()
        result = fn(*args)
        if time.monotonic() - start > timeout:
            raise StepTimeout(_message(timeout) + " (detected on return: not in the main thread)")
    if inspect.isawaitable(result):
        return _run_async(result, timeout)
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


def _run_async(awaitable: Awaitable[Any], timeout: float | None) -> Any:
    import asyncio  # only async steps pay for importing it

    async def runner() -> Any:
        try:
            return await asyncio.wait_for(awaitable, timeout)
        except TimeoutError:
            raise StepTimeout(_message(timeout or 0)) from None

    return asyncio.run(runner())
