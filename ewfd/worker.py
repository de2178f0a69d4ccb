"""The claim -> run loop of one worker, usable in-process or as a forked daemon worker.

In-process (tests, daemon-less programs)::

    worker = Worker(engine, engine.store, QueueSpec("emails"))
    worker.drain()                      # run every due workflow of the queue, then return
    threading.Thread(target=worker.run).start(); ...; worker.stop.set()

Under ``ewfd run``, :func:`child_main` is what a forked worker process runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import sys
import threading
import time
import traceback
from types import FrameType
from typing import Any, NoReturn

import structlog

from . import codec, critical, identity, liblog, proctree, runner
from .engine import Engine
from .errors import DatabaseLost, LeaseLost, StoreError
from .model import QueueSpec, Workflow
from .slots import Slot
from .step_output import Context, OutputMarks
from .store.base import Store

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_BOOT = 3          # could not start at all: the supervisor stops instead of looping
EXIT_DATABASE = 4      # the database file was deleted or replaced: the daemon stops
EXIT_RECYCLE = 10      # reached max_tasks_per_worker
IDLE_FALLBACK = 1.0    # with inotify, a wait is also a poll at least this often
WORKER_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD)


class _Interrupt(Exception):
    """Raised by the SIGTERM handler to end an idle wait at once."""


class Worker:
    """Claims workflows from one queue and runs them until told to stop."""

    def __init__(self, engine: Engine, store: Store, queue: QueueSpec, *,
                 stop: threading.Event | None = None, slot: Slot | None = None,
                 max_tasks: int = 0, parent_pid: int | None = None,
                 own_process: bool = False, marks: OutputMarks | None = None) -> None:
        self.engine = engine
        self.store = store
        self.queue = queue
        self.stop = stop or threading.Event()
        self.slot = slot
        self.max_tasks = max_tasks
        self.parent_pid = parent_pid
        self.own_process = own_process   # a daemon worker: every child process is a step's
        self.marks = marks               # a daemon worker: its output tied to its steps
        self._deadline: float | None = None
        self.owner = identity.current()
        self.tasks = 0
        self.waiting = False
        self._missed = False      # the last claim found nothing (not: lost its lease)
        self._listens = False     # the store wakes us on writes (set by run)
        self.log = liblog.get_logger().bind(queue=queue.name)
        # A daemon worker's signal handlers, as child_main set them: a step may replace one
        # (a library setting SIGTERM to SIG_IGN), and that must not last past its attempt.
        self._handlers = {sig: signal.getsignal(sig) for sig in WORKER_SIGNALS} \
            if own_process else {}

    def _own_signals(self) -> None:
        """Put back the worker's own handlers a step replaced (daemon workers only: in-process
        the host program's handlers are its own business)."""
        for sig, handler in self._handlers.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                if signal.getsignal(sig) is not handler:
                    signal.signal(sig, handler)

    def _on_step(self, wf: Workflow, index: int, deadline: float | None) -> None:
        """Called as an attempt starts (with its deadline) and, for a step with a timeout,
        as it ends (with None)."""
        self._own_signals()
        overran = self._deadline is not None and time.monotonic() > self._deadline
        self._deadline = deadline
        if overran and deadline is None and self.own_process:
            # The attempt is over; what it started (from a thread, say) must not run on and
            # pile up with each retry. In a daemon worker every child is a step's.
            killed = proctree.kill_descendants(os.getpid())
            if killed:
                self.log.warning("step.children_killed", workflow_uuid=wf.uuid,
                                 workflow=wf.name, step=wf.steps[index].name, pids=killed,
                                 reason="the attempt overran its timeout")
        if self.marks is not None:
            self.marks.enter(Context(wf.uuid, wf.name, wf.steps[index].name))
        if self.slot is not None:
            self.slot.running(wf.uuid, wf.steps[index].name, deadline or 0.0)

    def run_once(self) -> runner.Outcome | None:
        """Claim and run one due workflow; None when there was nothing to claim."""
        claimed = self.store.claim(self.queue.name, self.owner, self.queue.lease)
        self._missed = claimed is None
        if claimed is None:
            return None
        if self.slot is not None:
            self.slot.running(claimed.workflow.uuid, None)
        if self.marks is not None:   # what its hooks print is the workflow's
            self.marks.enter(Context(claimed.workflow.uuid, claimed.workflow.name, None))
        # Under ewfd run the supervisor renews the lease (it sees the slot RUNNING); in-process
        # nobody else knows we run it: the engine's lease thread must.
        held = (self.engine.leases_held(self.owner, self.queue.lease) if self.slot is None
                else contextlib.nullcontext())
        try:
            with held:
                return runner.execute(self.engine, self.store, claimed, self.log,
                                      stop=self.stop, requeue_after=self.queue.poll_interval,
                                      on_step=self._on_step,
                                      on_progress=self.slot.progress if self.slot else None)
        except LeaseLost:
            return None
        finally:
            self._own_signals()
            self.tasks += 1
            if self.slot is not None:
                self.slot.task_done()
                self.slot.idle()

    def drain(self, limit: int = 10_000) -> list[runner.Outcome]:
        """Run due workflows until none is left (for tests and daemon-less programs)."""
        done = []
        for _ in range(limit):
            outcome = self.run_once()
            if outcome is None:
                break
            done.append(outcome)
        return done

    def run(self) -> str:
        """The loop: returns ``"stopped"`` or ``"recycled"`` (after ``max_tasks``)."""
        # Arm the change watch before the first claim: a write after that claim is then
        # always noticed (the claim, under the write lock, saw every one before it).
        self._listens = bool(getattr(self.store, "wakes_on_change", False))
        delay = 0.05
        claim = True   # a claim is worth its write transaction: at start, busy, or work due
        while not self.stop.is_set():
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                self.log.error("worker.orphaned")
                return "stopped"
            try:
                outcome = self.run_once() if claim else None
                if outcome is not None:
                    if self.max_tasks and self.tasks >= self.max_tasks:
                        return "recycled"
                    continue
                wait = self._wait_time(refused=claim and self._missed)
                delay = 0.05
            except DatabaseLost as exc:   # retrying cannot help: stop, and say why
                self.log.error("database.lost", error=str(exc))
                raise
            except StoreError as exc:
                self.log.error("store.error", error=str(exc), retry_in=round(delay, 3))
                self._idle_wait(delay)
                delay = min(delay * 2, 5.0)
                claim = True
                continue
            claim = wait <= 0
            if not claim:
                self._idle_wait(wait)
        return "stopped"

    def _wait_time(self, *, refused: bool) -> float:
        """Seconds until a claim may succeed: 0 when a row is due now. Every write by anyone
        wakes an idle worker; this read, not a claim (which takes the write lock), tells it
        whether there is anything for it."""
        fallback = self.queue.poll_interval
        if self._listens:
            fallback = max(fallback, IDLE_FALLBACK)
        due_in = self.store.due_in(self.queue.name)
        if due_in is None:
            return fallback
        wait = max(0.0, due_in)
        if wait <= 0 and refused:   # the claim just found nothing although a row is due: a
            return fallback         # row it refuses; claiming again at once would be a loop
        return min(fallback, wait)

    def _idle_wait(self, seconds: float) -> None:
        if self.marks is not None:   # not after each workflow: the next claim says it all
            self.marks.enter(None)
        # SIGTERM raises _Interrupt only while ``waiting``, and clears it as it does: one per
        # wait, caught here wherever in _wait it lands (even in its ``finally``), and never
        # raised into a step.
        with contextlib.suppress(_Interrupt):
            self._wait(seconds)

    def _wait(self, seconds: float) -> None:
        self.waiting = True
        try:
            if not self.stop.is_set():
                self.store.wait_for_change(seconds)
        finally:
            self.waiting = False


# -- the forked process -------------------------------------------------------------------------
def _set_pdeathsig() -> None:
    """Ask Linux to SIGKILL us when the supervisor dies (no orphans after its ``kill -9``)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG


def _stdin_from_devnull() -> None:
    """A step must not read (steal) the terminal's input: workers read from /dev/null."""
    with contextlib.suppress(OSError):
        fd = os.open(os.devnull, os.O_RDONLY)
        if fd != 0:
            os.dup2(fd, 0)
            os.close(fd)


def child_main(engine: Engine, make_store: Any, queue: QueueSpec, slot: Slot, *,
               parent_pid: int, output_fd: int | None, close_fds: list[int],
               reopen_log: Any) -> NoReturn:
    """Entry point of a forked worker. Never returns: always ``os._exit``."""
    code = EXIT_CRASH
    me = os.getpid()
    try:
        _set_pdeathsig()
        if os.getppid() != parent_pid:   # the supervisor died before prctl took effect
            os._exit(EXIT_OK)
        proctree.lead_own_session()   # the terminal's signals are the supervisor's alone
        _stdin_from_devnull()
        signal.set_wakeup_fd(-1)
        for fd in close_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        marks = None
        if output_fd is not None:   # a step's print() must not break the JSON log stream
            marks = OutputMarks(output_fd)
            os.dup2(output_fd, 1)
            os.dup2(output_fd, 2)
            os.close(output_fd)
            # A pipe makes stdout block-buffered: a print() would reach the log only when the
            # worker exits. Line buffering hands each line to the supervisor at once.
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(AttributeError, ValueError, OSError):
                    stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
                _escape_unencodable(stream)
        random.seed()
        stop = threading.Event()
        worker_ref: list[Worker] = []

        def on_term(signum: int, frame: FrameType | None) -> None:
            stop.set()
            # Mid-step the slot must keep saying RUNNING: the supervisor renews the lease
            # and enforces the step's timeout from it until the step ends.
            if worker_ref and worker_ref[0].waiting:
                worker_ref[0].waiting = False   # at most one _Interrupt per wait
                slot.stopping()
                raise _Interrupt()

        def on_usr1(signum: int, frame: FrameType | None) -> None:
            # Runs in the middle of whatever the worker does, a step included: it must not
            # raise (reopen_log logs its own failure and keeps the old file).
            with contextlib.suppress(Exception):
                reopen_log()

        # critical.defers: inside a store write the handler waits for the COMMIT.
        signal.signal(signal.SIGTERM, critical.defers(on_term))
        signal.signal(signal.SIGINT, critical.defers(on_term))
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, critical.defers(on_usr1))
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        log = structlog.get_logger("ewfd").bind(queue=queue.name)
        try:
            store = make_store()
            engine.bind(store, save_templates=False)
        except DatabaseLost as exc:
            log.error("database.lost", error=str(exc))
            _exit(EXIT_DATABASE)
        except Exception as exc:
            log.error("worker.boot_failed", error=str(exc))
            _exit(EXIT_BOOT)
        worker = Worker(engine, store, queue, stop=stop, slot=slot,
                        max_tasks=queue.max_tasks_per_worker, parent_pid=parent_pid,
                        own_process=True, marks=marks)
        worker_ref.append(worker)
        critical.watch(slot.hold_deadline)   # no timeout kill while a step's write waits
        slot.idle()
        log.info("worker.started")
        try:
            reason = worker.run()
            code = EXIT_RECYCLE if reason == "recycled" else EXIT_OK
        except DatabaseLost:
            code = EXIT_DATABASE
        if marks is not None:   # whatever comes now is no workflow's
            marks.enter(None)
        with contextlib.suppress(Exception):
            store.close()
    except BaseException as exc:   # a bug: say so, and let the supervisor restart us
        if os.getpid() != me:   # a process a step forked, ending: it is not the worker
            if not isinstance(exc, SystemExit):   # as Python ends it: the traceback, status 1
                with contextlib.suppress(Exception):
                    traceback.print_exception(exc)
            _exit(_exit_code(exc))
        with contextlib.suppress(Exception):
            structlog.get_logger("ewfd").exception("worker.crashed", error=repr(exc))
        code = EXIT_CRASH
    _exit(code)


def _exit_code(exc: BaseException) -> int:
    """The exit status Python gives a process that ``exc`` ends."""
    if not isinstance(exc, SystemExit):
        return 1
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    return 1


def _escape_unencodable(stream: Any) -> None:
    """A str UTF-8 cannot encode (a non-UTF-8 file name) is printed escaped, not raised into
    the step. ``ewfd run`` set this before the fork already: changing it here can fail (a
    stream opened on a file seeks first, and fd 1 is a pipe now)."""
    if getattr(stream, "errors", codec.TEXT_ERRORS) != codec.TEXT_ERRORS:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors=codec.TEXT_ERRORS)


def _exit(code: int) -> NoReturn:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
