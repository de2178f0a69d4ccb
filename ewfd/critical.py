"""Critical sections: store writes that an exception raised by a signal handler cannot split.

CPython runs a signal's Python handler in the main thread between two
bytecodes, and whatever the handler raises (``StepTimeout`` from the step
timeout's SIGALRM, ``KeyboardInterrupt`` from SIGINT, an embedding program's
``SystemExit`` on SIGTERM) surfaces at that point. In a store write the point
can be just after ``BEGIN IMMEDIATE`` returned (an alarm that fired while
SQLite waited on the lock is handled right there), between two changes of an
in-memory row, or inside the ``ROLLBACK`` of a failed write: the transaction
then stays open, holds SQLite's write lock, and every other writer finds the
database locked until the process exits.

``with section():`` holds such exceptions back. A handler called inside the
section is recorded instead of run; when the outermost section ends (after
COMMIT or ROLLBACK) the recorded handlers run, in arrival order, and what they
raise surfaces there, as if the signal had arrived a moment later. So a step's
timeout that falls into the step's own write fires right after the write, and
the write is whole. ewfd's own handlers check for a section themselves
(:func:`defers`); any other Python handler of a signal in :data:`HELD` (the
default SIGINT handler, the host program's own) is swapped for a recorder for
the duration of the section and put back after.

Why not the alternatives:

- ``pthread_sigmask`` blocks a signal in the calling thread only: a
  process-directed signal (SIGALRM from ``setitimer``, ``kill`` from a shell)
  is then delivered to any other thread, and CPython runs the Python handler in
  the main thread all the same.
- Rolling back on entry and on exit lets the exception escape with the
  transaction open (the lock is held until the next write, which may never come
  in an embedding program), and the exception can cut the ROLLBACK itself short.

Holding back costs the timeout nothing it had: SQLite's busy wait is C code, so a
SIGALRM that arrives while ``BEGIN IMMEDIATE`` waits was only ever handled after
it; now it is handled after the COMMIT, microseconds later.

Limits: only the signals in :data:`HELD` are held back; a handler of another
signal that raises, or an exception that no signal handler raised
(``PyThreadState_SetAsyncExc``), is not. Sections are no-ops off the main
thread, where Python never runs signal handlers. What the section guarantees
is that nothing is raised between its first and its last statement; its own
exit runs the held handlers first and puts the swapped handlers back last, so
a second signal that raises during the exit can only leave a recorder
installed, and a recorder outside a section acts as the handler it replaced.
"""

from __future__ import annotations

import importlib
import inspect
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

Handler = Callable[[int, FrameType | None], Any]

HELD: tuple[int, ...] = tuple(
    getattr(signal, name) for name in (
        "SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGTERM",
        "SIGVTALRM", "SIGPROF", "SIGXCPU")
    if hasattr(signal, name))

# signal.getsignal and signal.signal convert handlers through an enum (an exception caught
# per callable: 2 to 7 us a call); the C functions they wrap answer in 0.05 to 1 us, and a
# section looks at every HELD signal on every write.
try:
    _c_signal: Any = importlib.import_module("_signal")
except ImportError:   # not CPython
    _c_signal = signal
_getsignal: Callable[[int], Any] = getattr(_c_signal, "getsignal", signal.getsignal)
_setsignal: Callable[[int, Any], Any] = getattr(_c_signal, "signal", signal.signal)
_MARK = "_ewfd_defers"

_depth = 0                                  # sections open in the main thread
_held: list[tuple[int, Handler]] = []       # handlers called inside, to run at the end
_swapped: dict[int, Handler] = {}           # foreign handlers replaced by _record
_watcher: Callable[[bool], None] | None = None   # told as the outermost section begins, ends


def watch(fn: Callable[[bool], None] | None) -> None:
    """Call ``fn(True)`` as the main thread enters its outermost section and ``fn(False)``
    as it leaves it (before the held handlers run). A daemon worker tells its supervisor
    so: a step whose own write waits on a locked database cannot react to its timeout
    (held back here) and must not be killed for ignoring it meanwhile. ``fn`` must not
    raise."""
    global _watcher
    _watcher = fn


def _in_main_thread() -> bool:
    return threading.get_ident() == threading.main_thread().ident


def deferring() -> bool:
    """True inside a section (of the main thread): a handler must hold its exception back."""
    return _depth > 0 and _in_main_thread()


def defers(handler: Handler) -> Handler:
    """Wrap a signal handler of ewfd's own so that inside a section it is held back."""
    def deferring_handler(signum: int, frame: FrameType | None) -> Any:
        if deferring():
            _hold(signum, handler)
            return None
        try:
            _run_held()   # one left over by a race at a section's exit: late, not lost
        finally:
            handler(signum, frame)
        return None

    setattr(deferring_handler, _MARK, True)
    return deferring_handler


def _hold(signum: int, handler: Handler) -> None:
    if all(held != signum for held, _ in _held):   # repeats coalesce, as the kernel's do
        _held.append((signum, handler))


def _record(signum: int, frame: FrameType | None) -> Any:
    """Stands in for a foreign handler inside a section. Left installed by an exit that a
    second signal cut short, it behaves as the handler it replaced until the next exit."""
    handler = _swapped.get(signum)
    if handler is None:
        return None
    if deferring():
        _hold(signum, handler)
        return None
    return handler(signum, frame)


setattr(_record, _MARK, True)


class section:
    """Hold back exceptions raised by signal handlers until the outermost section ends."""

    __slots__ = ("_active",)

    def __enter__(self) -> None:
        global _depth
        self._active = _in_main_thread()
        if not self._active:
            return
        if _depth == 0 and _held:
            _run_held()
        _depth += 1
        if _depth > 1:
            return
        try:
            _swap_in()
        except BaseException:   # a foreign handler not yet swapped ran as we swapped, and raised
            self._active = False
            _leave()
            raise
        if _watcher is not None:
            _watcher(True)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        global _depth
        if not self._active:
            return
        if _depth > 1:
            _depth -= 1
            return
        if _watcher is not None:
            _watcher(False)
        if _swapped or _held:
            _leave()
        else:   # the common case, kept cheap: nothing arrived, nothing to put back
            _depth = 0
            if _held:
                _run_held()


def _swap_in() -> None:
    for signum in HELD:
        handler = _getsignal(signum)
        if callable(handler) and not getattr(handler, _MARK, False):
            _swapped[signum] = handler
            _setsignal(signum, _record)


def _leave() -> None:
    """End the outermost section: run what was held (still holding whatever arrives
    meanwhile), then stop holding and put the foreign handlers back."""
    global _depth
    try:
        _run_held()
    finally:
        _depth = 0
        _restore()


def _restore() -> None:
    for signum in list(_swapped):
        if _getsignal(signum) is _record:
            # signal.signal first runs pending handlers: one restored a moment ago may raise
            # here; the recorders still installed then act as their handlers (see _record).
            _setsignal(signum, _swapped[signum])
        del _swapped[signum]


def _run_held() -> None:
    """Run every held handler, even if one raises: the last exception surfaces with the
    earlier ones as its ``__context__``, as when two handlers raise in plain Python."""
    if not _held:
        return
    signum, handler = _held.pop(0)
    try:
        handler(signum, inspect.currentframe())
    finally:
        _run_held()
