"""The supervisor of ``ewfd run``: forks worker pools per queue and keeps them healthy.

Shaped after gunicorn's arbiter: signal handlers only queue the signal (the
self-pipe wakes the loop); the main loop sleeps, reaps, spawns and runs the
periodic duties (lease renewal, expired-lease reclaim, timeout kills, queue
changes, the ``ctl workers`` runtime file, the systemd watchdog).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import psutil
import structlog

from . import codec, config_queues, critical, identity, proctree, runner, runtime, systemd
from .config import RESTART_KEYS, Config, needs_restart
from .engine import Engine
from .errors import DatabaseLost, StoreError
from .model import QueueSpec, WorkflowStatus
from .retention import Retention
from .slots import RUNNING, STARTING, Scoreboard
from .step_output import OutputReader
from .store import sqlite_file
from .store.sqlite import SQLiteStore
from .store.wake import ChangeWaiter
from .worker import EXIT_BOOT, EXIT_DATABASE, EXIT_RECYCLE, child_main

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD,
           signal.SIGQUIT, signal.SIGTSTP)
TICK = 0.1          # while a step runs (timeouts to enforce); the loop also wakes at once
IDLE_TICK = 1.0     # on a signal, a worker's output, a child's death or a database write
DB_WAKE_GAP = 0.1   # under load, database writes wake the loop at most this often
SETTLE_WAIT = 0.05  # after a database write event, wait this long at most for its commit
OUTPUT_GAP = 0.1   # and workers' output (a marker per step boundary: step_output)
PIPE_SIZE = 256 * 1024   # a worker's output pipe: seconds of markers at full speed
LOOP_BUSY_GIVE_UP = 0.5
MAX_SLOTS = 512
FAST_DEATH = 5.0          # a worker dying sooner than this after start counts as flapping
MAX_RESTART_DELAY = 30.0


@dataclass
class WorkerProc:
    pid: int
    queue: str
    slot: int
    owner: str
    output_fd: int
    started: float
    retiring: str | None = None     # why we asked it to go: shutdown, reload, removed, recycle
    killed_for_timeout: str | None = None
    output: OutputReader = field(default_factory=OutputReader)   # its lines and their step
    output_closed: bool = False     # it closed its stdout and stderr: stop selecting on them
    escapees: dict[int, Any] = field(default_factory=dict)   # its steps' children, out of its group


@dataclass
class Pool:
    spec: QueueSpec
    failures: int = 0
    next_start: float = 0.0


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Supervisor:
    def __init__(self, config: Config, engine: Engine, *, reopen_log: Callable[[], bool],
                 reload_config: Callable[[], Config] | None = None,
                 apply_logging: Callable[[Config], None] | None = None) -> None:
        self.config = config
        self.engine = engine
        self.reopen_log = reopen_log
        self.reload_config = reload_config
        self.apply_logging = apply_logging   # log_file and log_level of a reloaded config
        self.log = structlog.get_logger("ewfd")
        self.workers: dict[int, WorkerProc] = {}
        self.pools: dict[str, Pool] = {}
        self.board = Scoreboard(MAX_SLOTS)
        self.free_slots = list(range(MAX_SLOTS - 1, -1, -1))
        self.signals: list[int] = []
        self.stopping = False
        self.running = False
        self.reload_pending = False   # a HUP's config is read but not yet stored (database busy)
        self.reload_previous: Config | None = None   # the config that reload replaced
        self.booted = False      # a worker has started once: later boot failures are transient
        self.exit_code = 0
        self.store: SQLiteStore | None = None
        self.db_file: sqlite_file.FileId | None = None   # the file opened at start-up
        self.journal: tuple[sqlite_file.FileId | None, sqlite_file.FileId | None] = (None, None)
        self.database_lost = False
        self.started = time.time()
        self.runtime_path = runtime.path_for(str(config.database))
        self.retention = Retention()
        self._last: dict[str, float] = {}
        self._invalid_logged: dict[str, str] = {}   # queues rows reported as unusable
        self._published = ""
        self._published_progress: list[tuple[float | None, str | None]] = []
        self.drain_reasons: dict[str, str] = {}   # queue -> why it drains, until logged
        self._output_read = 0.0
        self._output_heavy = False   # the last read was big: read again without a pause

    # -- database ---------------------------------------------------------------------------
    def open_store(self) -> SQLiteStore:
        """The database is created at start-up only; later opens (ours, the workers') take
        the file opened then, and nothing else."""
        if self.database_lost:
            raise DatabaseLost(f"database file {self.config.database} is lost: not reopened")
        # Once running, the main loop must not sit in a locked database: a write gives up
        # quickly (logged as store.error) and is tried again on a later tick.
        give_up = LOOP_BUSY_GIVE_UP if self.running else 10.0
        store = SQLiteStore(self.config.database, synchronous=self.config.synchronous,
                            busy_timeout=min(give_up, 5.0), busy_give_up=give_up,
                            create=self.db_file is None, expect=self.db_file)
        if self.db_file is None:
            self.db_file = store.file_id
        self.journal = sqlite_file.journal_ids(str(self.config.database))   # ours, while open
        return store

    @property
    def db(self) -> SQLiteStore:
        if self.store is None:
            self.store = self.open_store()
        return self.store

    def check_database(self) -> None:
        """Stop (non-zero exit: systemd restarts us) when the database file was deleted or
        replaced: carrying on would write to a file nobody reads, or make a new one."""
        if self.db_file is None or self.database_lost:
            return
        why = sqlite_file.lost(str(self.config.database), self.db_file)
        if why is None:
            return
        self.log.error("database.lost", database=str(self.config.database), error=why)
        self.database_lost = True
        self.exit_code = EXIT_DATABASE
        self.close_store()
        moved = sqlite_file.set_aside(str(self.config.database), self.journal)
        if moved:   # else the next start would apply the old file's WAL to the new file
            self.log.warning("database.journal_set_aside", moved=moved)
        if not self.stopping:
            self.handle_stop(signal.SIGTERM)

    def close_store(self) -> None:
        """Close our connection before fork: SQLite must never see a connection cross a fork."""
        if self.store is not None:
            self.store.close()
            self.store = None

    def every(self, name: str, seconds: float) -> bool:
        now = time.monotonic()
        if now - self._last.get(name, 0.0) >= seconds:
            self._last[name] = now
            return True
        return False

    # -- set-up ------------------------------------------------------------------------------
    def setup(self) -> None:
        self.pipe_r, self.pipe_w = os.pipe()
        for fd in (self.pipe_r, self.pipe_w):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
            fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
        signal.set_wakeup_fd(self.pipe_w, warn_on_full_buffer=False)
        self.changes = ChangeWaiter(str(self.config.database))
        self._db_woke = 0.0
        self._db_event = False   # a write event whose commit we have not yet made sure to see
        for sig in HANDLED:   # marked as ewfd's own, so store writes need not swap it out
            signal.signal(sig, critical.defers(self._on_signal))
        proctree.become_subreaper()   # what a dead worker leaves comes to us, not to init
        self.serving_fd = -1
        if str(self.config.database) != ":memory:":
            self.db.check_file()   # opened (on a first start, created): the file to lock
            self.serving_fd = sqlite_file.hold_for_supervisor(str(self.config.database))
        self.kill_leftovers()
        self.engine.bind(self.db, save_templates=True)
        self.store_config_queues()
        self.release_dead_owners("supervisor died")   # workers of a supervisor that was killed
        self.sync_queues()

    def store_config_queues(self, previous: Config | None = None) -> None:
        """The config's queues are stored (ctl sees them, and where they are defined) with
        the config's settings; a reload drains those it removed (config_queues). A
        configured queue's row holding values ewfd cannot use is logged, then rewritten."""
        _, invalid = self.db.queue_rows()
        self.invalid_queues(invalid)
        self.drain_reasons.update(config_queues.store_config_queues(self.db, self.config,
                                                                    previous))

    def invalid_queues(self, invalid: dict[str, str]) -> None:
        """A queues row a person filled with values ewfd cannot use never stops us: a
        configured queue's row is rewritten with the config's settings, any other is
        skipped (its pool, if any, keeps its last good settings). Logged once per problem."""
        logged = {}
        for name, problem in invalid.items():
            configured = self.config.queues.get(name)
            if self._invalid_logged.get(name) != problem:
                action = ("the config's settings are stored instead" if configured else
                          "ignored: its workers keep their last good settings"
                          if name in self.pools else "ignored: no workers until it is fixed")
                self.log.error("queue.invalid", queue=name, error=problem, action=action)
            if configured is not None:
                self.db.save_queue(config_queues.config_spec(configured))
            else:
                logged[name] = problem
        self._invalid_logged = logged

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)

    # -- the main loop -----------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until stopped. However that ends, nothing our workers' steps started
        outlives us."""
        try:
            return self.serve()
        finally:
            self.kill_remaining()

    def serve(self) -> int:
        self.setup()
        self.running = True
        self.close_store()   # reopened with the main loop's short busy wait
        self.log.info("supervisor.started", database=str(self.config.database),
                      app=self.config.app, queues=sorted(self.pools),
                      workers=sum(p.spec.workers for p in self.pools.values()))
        self.spawn_missing()
        systemd.ready(f"running {len(self.workers)} workers")
        watchdog = systemd.watchdog_interval()
        while True:
            self.handle_signals()
            self.reap()
            self.check_database()
            if self.stopping:
                if not self.workers:
                    break
                try:   # steps finishing within shutdown_timeout may outlive their lease
                    self.keep_leases()
                except StoreError as exc:
                    self.log.error("store.error", error=str(exc))
                self.wait(0.1)
                continue
            self.duties()
            if watchdog and self.every("watchdog", watchdog / 2):
                systemd.watchdog()
            self.spawn_missing()
            busy = any(self.board.read(w.slot).state == RUNNING for w in self.workers.values())
            self.wait(TICK if busy or self._db_event else IDLE_TICK)
        self.kill_remaining()
        self.close_store()
        self.changes.close()
        with contextlib.suppress(OSError):
            os.unlink(self.runtime_path)
        self.log.info("supervisor.stopped", exit_code=self.exit_code)
        return self.exit_code

    def wait(self, timeout: float) -> None:
        outputs = {w.output_fd: w for w in self.workers.values() if not w.output_closed}
        gap_left = OUTPUT_GAP - (time.monotonic() - self._output_read)
        if gap_left > 0 and not self._output_heavy:   # in batches: markers must not wake us
            outputs, timeout = {}, min(timeout, gap_left)
        fds = [self.pipe_r, *outputs]
        db_fd = self.changes.fileno()
        if db_fd >= 0:   # a queue created or closed by ctl or the API: act at once
            gap_left = DB_WAKE_GAP - (time.monotonic() - self._db_woke)
            if gap_left <= 0:
                fds.append(db_fd)
            else:
                timeout = min(timeout, gap_left)
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return
        for fd in ready:
            if fd == self.pipe_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.pipe_r, 4096):
                        pass
            elif fd == db_fd:
                if self.changes.drain():
                    self._db_woke = time.monotonic()
                    self._db_event = True
            else:
                self.read_output(outputs[fd])

    def read_output(self, proc: WorkerProc, final: bool = False) -> None:
        """Log what a worker printed, line by line, with the workflow and step that printed
        it (step_output); ``final`` (it has exited) drains the pipe and logs an unfinished
        last line too."""
        self._output_read = time.monotonic()
        data: list[bytes] = []
        for _ in range(16 if final else 4):   # bounded: a grandchild may still be writing
            try:
                chunk = os.read(proc.output_fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:   # EOF: a worker that closed its stdout and stderr must not make
                proc.output_closed = True    # select return at once forever
                break
            data.append(chunk)
        self._output_heavy = len(data) > 1
        for line, context in proc.output.feed(b"".join(data), final):
            self.log.info("worker.output", worker_pid=proc.pid, queue=proc.queue,
                          output=codec.safe_bytes(line)[:4096],
                          **(context.log_keys() if context else {}))

    # -- signals ---------------------------------------------------------------------------
    def handle_signals(self) -> None:
        """Act on the queued signals. What one fails on is logged, never raised: HUP and
        USR1 must not stop the daemon, whatever the database or the disk is doing."""
        while self.signals:
            signum = self.signals.pop(0)
            try:
                if signum in (signal.SIGTERM, signal.SIGINT):
                    self.handle_stop(signum)
                elif signum == signal.SIGQUIT:   # Ctrl-backslash: stop now (TERM, TERM)
                    self.handle_stop(signum, at_once=True)
                elif signum == signal.SIGTSTP:
                    self.handle_tstp()
                elif signum == signal.SIGHUP:
                    self.handle_hup()
                elif signum == signal.SIGUSR1:
                    self.handle_usr1()
            except Exception as exc:
                self.log.exception("supervisor.signal_failed", signal=signal_name(signum),
                                   error=str(exc))

    def handle_usr1(self) -> None:
        """Reopen the log (logrotate); a failure is logged by ``reopen_log`` and changes
        nothing else: the workers are told all the same."""
        reopened = self.reopen_log()
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)
        if reopened:
            self.log.info("supervisor.log_reopened")

    def handle_stop(self, signum: int, at_once: bool = False) -> None:
        if self.stopping or at_once:   # a second TERM/INT, or QUIT: do not wait any longer
            self.log.warning("supervisor.stopping", signal=signal_name(signum), forced=True)
            self.shutdown_deadline = 0.0
            if self.stopping:
                return
        else:
            self.shutdown_deadline = time.monotonic() + self.config.shutdown_timeout
            self.log.info("supervisor.stopping", signal=signal_name(signum),
                          shutdown_timeout=self.config.shutdown_timeout)
        self.stopping = True
        systemd.stopping()
        for proc in self.workers.values():
            self.retire(proc, "shutdown")

    def handle_tstp(self) -> None:
        """Ctrl-Z: pause the whole daemon (workers and their steps' processes), then
        ourselves; when continued (fg, SIGCONT), continue them."""
        self.log.info("supervisor.suspended", workers=sorted(self.workers))
        groups = list(self.workers)
        proctree.signal_groups(groups, signal.SIGSTOP)
        os.kill(os.getpid(), signal.SIGSTOP)   # TSTP would be dropped in an orphaned group
        proctree.signal_groups(groups, signal.SIGCONT)
        proctree.wait_continued(groups, timeout=1.0)   # or renew_leases would skip them
        self.log.info("supervisor.resumed")

    def handle_hup(self) -> None:
        if self.reload_config is None or self.stopping:
            return
        systemd.reloading()
        try:
            config = self.reload_config()
        except Exception as exc:
            self.log.error("supervisor.reload_failed", error=str(exc))
            systemd.ready()
            return
        kept = {key: getattr(self.config, key) for key in RESTART_KEYS}
        changed = needs_restart(self.config, config)
        if changed:
            self.log.warning("supervisor.reload_needs_restart", keys=sorted(changed), **changed)
        self.switch_logging(config)
        self.reload_previous, self.config = self.config, replace(config, **kept)
        self.reload_pending = True
        self.apply_reload()
        systemd.ready()

    def apply_reload(self) -> None:
        """Store the reloaded config's queues and replace the workers. A database that is
        locked or full makes the reload wait, not the daemon fail: it is tried again every
        second (from :meth:`duties`) until it lands."""
        try:
            self.store_config_queues(self.reload_previous)
            self.sync_queues()
        except StoreError as exc:
            self.log.error("supervisor.reload_failed", error=str(exc), retry_in=1.0)
            return
        self.reload_pending = False
        for proc in list(self.workers.values()):
            self.retire(proc, "reload")
        for pool in self.pools.values():
            pool.failures, pool.next_start = 0, 0.0
        self.log.info("supervisor.reloaded",
                      workers=sum(p.spec.workers for p in self.pools.values()))

    def switch_logging(self, config: Config) -> None:
        """Apply a reloaded ``log_file`` and ``log_level``, here and in the workers forked
        from now on (the running ones are all replaced by the reload)."""
        if self.apply_logging is None:
            return
        if config.log_file != self.config.log_file:
            self.log.info("supervisor.log_moved", to=config.log_file)
        try:
            self.apply_logging(config)
        except OSError as exc:
            self.log.error("log.switch_failed", log_file=config.log_file, error=str(exc))
            config = replace(config, log_file=self.config.log_file)
            self.apply_logging(config)   # the level still applies
        self.log = structlog.get_logger("ewfd")   # the old one keeps the old level

    def retire(self, proc: WorkerProc, why: str) -> None:
        """Ask a worker to finish its current step and exit (SIGTERM)."""
        if proc.retiring is None:
            proc.retiring = why
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)

    # -- reaping ---------------------------------------------------------------------------------
    def reap(self) -> None:
        if self.stopping and self.workers and time.monotonic() >= self.shutdown_deadline:
            for proc in self.workers.values():
                if proc.retiring != "killed":
                    proc.retiring = "killed"
                    self.log.warning("worker.killed", worker_pid=proc.pid, queue=proc.queue,
                                     reason="shutdown_timeout")
                    self.kill(proc)
        while True:
            try:
                pid = proctree.next_exited()
            except ChildProcessError:
                return
            if pid == 0:
                return
            dead = self.workers.get(pid)
            if dead is not None:   # still a zombie: its group id cannot have been reused
                proctree.kill_tree(pid, dead.escapees.values())
            _, status = os.waitpid(pid, 0)
            if dead is not None:
                del self.workers[pid]
                self.on_exit(dead, status)

    def on_exit(self, proc: WorkerProc, status: int) -> None:
        self.read_output(proc, final=True)
        os.close(proc.output_fd)
        self.free_slots.append(proc.slot)
        lived = time.monotonic() - proc.started
        if os.WIFSIGNALED(status):
            how: dict[str, Any] = {"signal": signal_name(os.WTERMSIG(status))}
            reason = how["signal"]
            code = -os.WTERMSIG(status)
        else:
            code = os.WEXITSTATUS(status)
            how, reason = {"exit_code": code}, f"exit code {code}"
        if proc.output.context is not None:   # it died in a workflow: say which, and where
            how.update(proc.output.context.log_keys())
        (self.log.warning if code else self.log.info)(   # a signal or an error: not routine
            "worker.exited", worker_pid=proc.pid, queue=proc.queue, **how)
        try:
            self.release(proc, reason)
        except StoreError as exc:   # leases then expire and are reclaimed: nothing is lost
            self.log.error("store.error", error=str(exc))
        pool = self.pools.get(proc.queue)
        if self.stopping or pool is None or proc.retiring in ("reload", "removed", "shutdown"):
            return
        if code == EXIT_DATABASE:
            self.check_database()   # the worker found the file replaced or deleted
            if self.database_lost:
                return
        if code == EXIT_BOOT and not self.booted:
            self.log.error("supervisor.boot_error", queue=proc.queue,
                           error="no worker could start; stopping instead of crash-looping")
            self.exit_code = EXIT_BOOT
            self.handle_stop(signal.SIGTERM)
            return   # once workers have run, a failed start is transient: restart with backoff
        if code == EXIT_RECYCLE or proc.retiring == "recycle":
            self.log.info("worker.recycled", worker_pid=proc.pid, queue=proc.queue,
                          reason="max_memory" if proc.retiring == "recycle" else
                          "max_tasks_per_worker")
            return
        if code != 0 and lived < FAST_DEATH:
            pool.failures += 1
            delay = min(0.1 * 2 ** pool.failures, MAX_RESTART_DELAY)
            pool.next_start = time.monotonic() + delay
        else:
            pool.failures, delay = 0, 0.0
        if code != 0:
            self.log.warning("worker.restarted", queue=proc.queue, worker_pid=proc.pid,
                             delay=round(delay, 3), failures=pool.failures, reason=reason)

    def release(self, proc: WorkerProc, reason: str) -> None:
        """Give a dead worker's workflows back at once instead of waiting for the lease."""
        if self.database_lost:   # the new file never had them; the old one is gone
            return
        store = self.db
        if proc.killed_for_timeout is not None:
            for claimed in store.held_by(proc.owner):
                runner.record_killed(self.engine, store, claimed, proc.killed_for_timeout,
                                     proc.pid, self.log)
        graceful = proc.retiring in ("shutdown", "killed") and self.stopping
        self._interrupted(store.interrupt(owner=proc.owner, reason=reason, crash=not graceful))

    def release_dead_owners(self, reason: str) -> None:
        """Take back workflows leased to dead processes that are not our workers (those of a
        killed supervisor, which may still be exiting when we start) without waiting for
        their leases to expire."""
        ours = {w.owner for w in self.workers.values()}
        for owner in self.db.lease_owners():
            if owner not in ours and identity.is_dead(owner):
                self._interrupted(self.db.interrupt(owner=owner, reason=reason))

    def _interrupted(self, items: list[Any]) -> None:
        for item in items:
            keys = {"workflow_uuid": item.uuid, "workflow": item.name, "queue": item.queue,
                    "step": item.step}
            if item.status == WorkflowStatus.FAILED:
                self.log.error("workflow.failed", error=item.error, **keys)
            elif item.status == WorkflowStatus.CANCELLED:
                self.log.info("workflow.cancelled", **keys)
            else:
                self.log.warning("workflow.interrupted", crashes=item.crashes, **keys)

    # -- process trees: nothing a step started outlives its worker ----------------------------
    def kill(self, proc: WorkerProc) -> None:
        """SIGKILL a worker with its process group and its steps' children outside it."""
        self.note_escapees(always=True)
        proctree.kill_tree(proc.pid, proc.escapees.values())

    def note_escapees(self, always: bool = False) -> None:
        """Remember the processes that left a worker's group while it runs (a step's
        ``start_new_session=True`` child), to kill them with it even if it dies on its own.
        One scan of the process table, only while a step runs (or before a kill)."""
        if not always and not any(self.board.read(w.slot).state == RUNNING
                                  for w in self.workers.values()):
            return
        found = proctree.escapees(os.getpid(), set(self.workers))
        for proc in self.workers.values():
            kept = {pid: p for pid, p in proc.escapees.items() if p.is_running()}
            kept.update((p.pid, p) for p in found.get(proc.pid, []))
            proc.escapees = kept

    def kill_remaining(self) -> None:
        """Kill whatever is left in our process tree (workers after an error; orphans their
        steps left, re-parented to us as the subreaper) and reap it."""
        killed = proctree.kill_descendants(os.getpid())
        if killed:
            self.log.warning("supervisor.orphans_killed", pids=killed)
        proctree.reap_all(timeout=5.0)

    def kill_leftovers(self) -> None:
        """After a ``kill -9`` of the previous supervisor on this database its workers died
        (PDEATHSIG), but what their steps started may still run in their sessions."""
        prior = runtime.read(self.runtime_path)
        if not prior or not identity.is_dead((prior.get("supervisor") or {}).get("identity")):
            return
        sessions = set()
        for row in prior.get("workers") or []:
            with contextlib.suppress(TypeError, ValueError, AttributeError):
                sessions.add(int(row["pid"]))
        killed = proctree.kill_sessions(sessions)
        if killed:
            self.log.warning("supervisor.leftovers_killed", pids=killed,
                             reason="left by the workers of a supervisor that was killed")

    # -- periodic duties -------------------------------------------------------------------------
    def duties(self) -> None:
        try:
            self.check_timeouts()
            if self.every("escapees", 1.0):
                self.note_escapees()
            self.keep_leases()
            if self.reload_pending and self.every("reload", 1.0):
                self.apply_reload()
            if self.every("reclaim", 1.0):
                self.release_dead_owners("worker died")
                # Renew our live workers' leases first: after a full disk or a long lock their
                # renewals failed, and the sweep must not take back leases of running steps.
                self.renew_leases()
                self._interrupted(self.db.interrupt(expired=True, reason="lease expired"))
                for uuid, error in self.db.reject_unknown_queues():
                    self.log.error("job.rejected", workflow_uuid=uuid, error=error)
                config_queues.close_drained(
                    self.db, [n for n, p in self.pools.items() if p.spec.draining], self.log)
            if self.settled_write() or self.db.changed() or self.every("queues", 1.0):
                self.sync_queues()   # a queue created, changed or closed
            if self.every("auto_delete", 1.0):
                self.auto_delete()
            if self.every("memory", 5.0):
                self.check_memory()
            if self.every("checkpoint", 60.0):
                self.db.maintenance()
            if self.retention.due(self.config.retention):
                self.retention.run_once(self.db, self.config.retention, self.log)
            self.publish()
        except StoreError as exc:
            self.log.error("store.error", error=str(exc))
        except Exception as exc:   # a value in a row nobody foresaw: logged, never our end
            self.log.exception("supervisor.duty_failed", error=repr(exc))

    def settled_write(self) -> bool:
        """True once a write we were told of (inotify) is sure to be visible. The event comes
        with the ``-wal`` write, before the commit is published: wait for the writer to end
        its transaction (briefly; if it takes longer, the next tick waits again)."""
        if not self._db_event:
            return False
        self._db_event = not self.db.settle(SETTLE_WAIT)
        return not self._db_event

    def sync_queues(self) -> None:
        """Make the pools match the stored queues (config queues take the config's settings)."""
        specs, invalid = self.db.queue_rows()
        self.invalid_queues(invalid)
        stored = {q.name: q for q in specs}
        for name in invalid:   # config queues: rewritten just now; others keep their pool
            configured = self.config.queues.get(name)
            if configured is not None:
                stored[name] = config_queues.config_spec(configured)
            elif name in self.pools:
                stored[name] = self.pools[name].spec
        stored = config_queues.enforce(self.db, self.config, stored, self.log)
        for name, spec in stored.items():
            pool = self.pools.get(name)
            if pool is None:
                self.pools[name] = Pool(spec)
                if self.workers:
                    self.log.info("queue.added", queue=name, workers=spec.workers)
            if spec.draining and (pool is None or not pool.spec.draining):
                self.log.info("queue.draining", queue=name, reason=self.drain_reasons.pop(
                    name, "ewfd ctl close-queue --drain"))
            if pool is not None:
                pool.spec = spec
        for name in [n for n in self.pools if n not in stored]:
            del self.pools[name]
            self.log.info("queue.removed", queue=name)
            for proc in self.workers.values():
                if proc.queue == name:
                    self.retire(proc, "removed")
        for name, pool in self.pools.items():   # fewer workers wanted: retire the extras
            active = [w for w in self.workers.values() if w.queue == name and not w.retiring]
            for proc in active[pool.spec.workers:]:
                self.retire(proc, "removed")

    def keep_leases(self) -> None:
        if self.database_lost:
            return
        if self.every("leases", min([p.spec.lease for p in self.pools.values()] or [30]) / 3):
            self.renew_leases()

    def renew_leases(self) -> None:
        """Vouch for live workers' leases, so a step holding the GIL cannot lose its lease."""
        by_lease: dict[float, list[str]] = {}
        for proc in self.workers.values():
            if self.board.read(proc.slot).state != RUNNING:
                continue
            try:   # a stopped (SIGSTOP) worker must lose its lease: that is what fencing is for
                if psutil.Process(proc.pid).status() == psutil.STATUS_STOPPED:
                    continue
            except psutil.Error:
                continue
            pool = self.pools.get(proc.queue)
            by_lease.setdefault(pool.spec.lease if pool else 30.0, []).append(proc.owner)
        for lease, owners in by_lease.items():
            self.db.renew_leases(owners, lease)

    def check_timeouts(self) -> None:
        now = time.monotonic()
        for proc in self.workers.values():
            view = self.board.read(proc.slot)
            if view.state != STARTING:
                self.booted = True
            if (proc.killed_for_timeout is None and view.state == RUNNING and view.deadline
                    and now > view.deadline + self.config.timeout_grace):
                proc.killed_for_timeout = (
                    f"ignored the interruption for {now - view.deadline:.1f}s; worker killed")
                known = proc.output.context
                self.log.warning("worker.killed", worker_pid=proc.pid, queue=proc.queue,
                                 workflow_uuid=view.workflow_uuid, step=view.step,
                                 workflow=known.workflow if known and
                                 known.workflow_uuid == view.workflow_uuid else None,
                                 reason="step timeout")
                self.kill(proc)

    def auto_delete(self) -> None:
        for name, pool in list(self.pools.items()):
            if not pool.spec.auto_delete:
                continue
            open_count, last = self.db.queue_activity(name)
            if open_count == 0 and last is not None and time.time() - last > pool.spec.delete_after:
                with contextlib.suppress(LookupError):
                    self.db.delete_queue(name)
                    self.log.info("queue.auto_deleted", queue=name)
        self.sync_queues()

    def check_memory(self) -> None:
        for proc in self.workers.values():
            pool = self.pools.get(proc.queue)
            if pool is None or not pool.spec.max_memory or proc.retiring:
                continue
            try:
                rss = psutil.Process(proc.pid).memory_info().rss
            except psutil.Error:
                continue
            if rss > pool.spec.max_memory:
                self.log.info("worker.recycling", worker_pid=proc.pid, queue=proc.queue,
                              rss_bytes=rss, max_memory=pool.spec.max_memory)
                self.retire(proc, "recycle")

    def publish(self) -> None:
        """Write the runtime file ``ewfd ctl workers`` reads (when it changed, or every 5 s)."""
        rows, progress = [], []
        for proc in sorted(self.workers.values(), key=lambda w: w.pid):
            view = self.board.read(proc.slot)
            rows.append({"pid": proc.pid, "queue": proc.queue,
                         "state": "stopping" if proc.retiring else view.state_name,
                         "workflow_uuid": view.workflow_uuid, "step": view.step,
                         "tasks": view.tasks})
            progress.append((view.progress, view.progress_message))
        text = repr(rows)
        # A step's progress alone changes the file at most once a second.
        if text == self._published and not self.every("publish", 5.0) and (
                progress == self._published_progress or not self.every("progress", 1.0)):
            return
        self._published, self._published_progress = text, progress
        for row, (fraction, message) in zip(rows, progress, strict=True):
            row.update(progress=fraction, progress_message=message)
        with contextlib.suppress(OSError):
            runtime.write(self.runtime_path, {
                "supervisor": {"pid": os.getpid(), "identity": identity.current(),
                               "started_at": self.started, "database": str(self.config.database),
                               "config": str(self.config.path) if self.config.path else None,
                               "retention": self.retention.describe(self.config.retention)},
                "updated_at": time.time(), "workers": rows})

    # -- spawning -------------------------------------------------------------------------------
    def spawn_missing(self) -> None:
        now = time.monotonic()
        wanted: list[Pool] = []
        for name, pool in sorted(self.pools.items()):
            active = sum(1 for w in self.workers.values() if w.queue == name and not w.retiring)
            if pool.next_start <= now:
                wanted += [pool] * max(0, pool.spec.workers - active)
        if not wanted:
            return
        self.close_store()
        for pool in wanted:
            if not self.free_slots:
                self.log.error("supervisor.too_many_workers", limit=MAX_SLOTS)
                break
            self.spawn(pool)

    def spawn(self, pool: Pool) -> None:
        slot = self.free_slots.pop()
        self.board.reset(slot)
        out_r, out_w = os.pipe()
        parent = os.getpid()
        close = [self.pipe_r, self.pipe_w, out_r, self.changes.fileno(), self.serving_fd,
                 *(w.output_fd for w in self.workers.values())]
        database, synchronous, expect = self.config.database, self.config.synchronous, self.db_file
        self.engine.max_state_size = self.config.max_state_size
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        pid = os.fork()
        if pid == 0:   # the child: never returns
            for sig in HANDLED:
                signal.signal(sig, signal.SIG_DFL)
            child_main(self.engine, lambda: SQLiteStore(database, synchronous=synchronous,
                                                        create=False, expect=expect),
                       pool.spec, self.board.slot(slot), parent_pid=parent, output_fd=out_w,
                       close_fds=close, reopen_log=self.reopen_log)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(out_w)
        fcntl.fcntl(out_r, fcntl.F_SETFL, fcntl.fcntl(out_r, fcntl.F_GETFL) | os.O_NONBLOCK)
        with contextlib.suppress(OSError, AttributeError):   # room for markers between reads
            fcntl.fcntl(out_r, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self.workers[pid] = WorkerProc(pid, pool.spec.name, slot, identity.of(pid), out_r,
                                       time.monotonic())
