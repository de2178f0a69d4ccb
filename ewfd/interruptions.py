"""Telling what a step raised from what a signal raised while the step ran.

Step code may raise any ``BaseException``: ``SystemExit`` (an argparse ``main()``
given a bad option), ``KeyboardInterrupt``, ``GeneratorExit``, a coroutine's own
``CancelledError``. Each is a failure of that attempt, like any exception. But
an exception a signal handler raises in the middle of the step (Ctrl-C in a
program that embeds the engine; the program's own SIGTERM handler calling
``sys.exit``) asks the *process* to stop: it must propagate as before.

A signal handler written in Python leaves its frame in the traceback of what
it raised, which is how the two are told apart. Python's default SIGINT handler
is C code and leaves none, so while a workflow runs in the main thread it is
replaced by :func:`_on_sigint`, which does the same in Python.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Iterator
from types import CodeType, FrameType
from typing import Any

from .errors import StepTimeout


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    """Python's default SIGINT behaviour, with a frame that marks it as a signal's doing."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigint_traced() -> Iterator[None]:
    """While a workflow runs in the main thread, Ctrl-C raises from a traceable handler."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield   # off the main thread no handler can raise; a program's own handler is traced
        return
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is _on_sigint:   # the step may have set its own
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _code_of(handler: Any) -> CodeType | None:
    while isinstance(handler, functools.partial):
        handler = handler.func
    code = getattr(getattr(handler, "__func__", handler), "__code__", None)   # (a method)
    if code is None and callable(handler):   # an object with a __call__ method
        code = getattr(type(handler).__call__, "__code__", None)
    return code if isinstance(code, CodeType) else None


def raised_by_signal(exc: BaseException) -> bool:
    """True when a Python signal handler installed now raised ``exc``."""
    codes = set()
    for signum in signal.valid_signals():
        with contextlib.suppress(ValueError, OSError):
            code = _code_of(signal.getsignal(signum))
            if code is not None:
                codes.add(code)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return True
        tb = tb.tb_next
    return False


def is_step_failure(exc: BaseException) -> bool:
    """True when ``exc``, raised out of step or hook code, fails the attempt; False when it
    must propagate because a signal handler raised it to stop the process."""
    if isinstance(exc, Exception | StepTimeout):
        return True
    return not raised_by_signal(exc)
