"""The ``daemon`` fixture: ``ewfd run`` as a subprocess on a temp database, and ways to watch it.

Every wait here polls with a deadline (a log line, a row, a file); nothing sleeps
in place of synchronising. Teardown kills the supervisor and every process it
ever had as a descendant, by pid, whether the test passed or not.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

HERE = Path(__file__).resolve().parent
POLL = 0.02
DEFAULT_WAIT = 15.0

LogPredicate = Callable[[dict[str, Any]], bool]


def event(name: str, **keys: Any) -> LogPredicate:
    """A predicate matching log lines of event ``name`` whose ``keys`` have the given values."""
    def match(line: dict[str, Any]) -> bool:
        return line.get("event") == name and all(line.get(k) == v for k, v in keys.items())
    return match


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete line of ``path`` parsed; any line that is not one JSON object fails."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    lines.pop()   # the text after the last newline: empty, or a line still being written
    out = []
    for number, raw in enumerate(lines, 1):
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise AssertionError(f"{path}:{number}: not JSON: {raw[:300]!r}") from None
        assert isinstance(parsed, dict), f"{path}:{number}: not a JSON object: {raw[:300]!r}"
        out.append(parsed)
    return out


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


class Daemon:
    """One ``ewfd run`` on a temp directory (restartable), with helpers to observe it."""

    def __init__(self, tmp_path: Path, registry: list[psutil.Process]) -> None:
        self.dir = tmp_path
        self.db = tmp_path / "ewfd.db"
        self.log_path = tmp_path / "ewfd.log"
        self.config_path: Path | None = tmp_path / "ewfd.toml"
        self.registry = registry            # every process to kill at teardown
        self.proc: subprocess.Popen[bytes] | None = None
        self.stdout_path = tmp_path / "stdout.txt"
        self.stderr_path = tmp_path / "stderr.txt"
        self.extra_env: dict[str, str] = {}
        self.ewfd: dict[str, Any] = {}
        self.queues: dict[str, dict[str, Any]] = {}

    # -- config ----------------------------------------------------------------------
    def configure(self, ewfd: dict[str, Any] | None = None,
                  queues: dict[str, dict[str, Any]] | None = None) -> Path:
        """Write ewfd.toml: the e2e app on ``ewfd.db`` logging to ``ewfd.log``, plus overrides."""
        settings: dict[str, Any] = {"app": "e2eapp:engine", "database": str(self.db),
                                    "log_file": str(self.log_path), "timeout_grace": "1s",
                                    "shutdown_timeout": "10s"}
        settings.update(ewfd or {})
        self.ewfd = settings
        self.queues = queues if queues is not None else {"default": {"workers": 2}}
        text = ["[ewfd]"] + [f"{k} = {toml_value(v)}" for k, v in settings.items()]
        for name, table in self.queues.items():
            text += ["", f"[queues.{name}]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
        assert self.config_path is not None
        self.config_path.write_text("\n".join(text) + "\n")
        return self.config_path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("EWFD_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["E2E_DIR"] = str(self.dir)
        env.pop("PYTHONUNBUFFERED", None)   # the daemon must cope with buffered stdio itself
        env.update(self.extra_env)
        return env

    # -- process -------------------------------------------------------------------------
    def start(self, *, workers: int | None = None, args: Iterable[str] | None = None,
              cwd: Path | None = None, timeout: float = DEFAULT_WAIT) -> Daemon:
        """Start the supervisor; wait for ``workers`` worker.started lines (default: the
        configured total) from this run."""
        if self.config_path is not None and not self.config_path.exists():
            self.configure()
        if args is None:
            args = ["--config", str(self.config_path)] if self.config_path else []
        seen = len(self.logs())
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ewfd", "run", *args], cwd=cwd or self.dir, env=self.env(),
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        with contextlib.suppress(psutil.Error):
            self.registry.append(psutil.Process(self.proc.pid))
        if workers is None:
            workers = sum(int(q.get("workers", 2)) for q in self.queues.values()) or 2
        if workers:
            wait_until(lambda: len([line for line in self.logs()[seen:]
                                    if line.get("event") == "worker.started"]) >= workers,
                       timeout, f"{workers} worker.started lines{self._tail()}")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the daemon was not started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stop(self, timeout: float = DEFAULT_WAIT, signum: int = signal.SIGTERM) -> int:
        """Send TERM (or ``signum``) and return the exit code."""
        assert self.proc is not None
        self.remember_descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.proc.wait(timeout)

    def worker_pids(self) -> list[int]:
        """Live (not zombie) child processes of the supervisor."""
        try:
            children = psutil.Process(self.pid).children()
        except psutil.Error:
            return []
        pids = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                if child.status() != psutil.STATUS_ZOMBIE:
                    pids.append(child.pid)
                    self._remember(child)
        return sorted(pids)

    def wait_for_workers(self, count: int, timeout: float = DEFAULT_WAIT) -> list[int]:
        """Wait until exactly ``count`` workers are alive; returns their pids."""
        found: list[int] = []

        def check() -> bool:
            found[:] = self.worker_pids()
            return len(found) == count
        try:
            wait_until(check, timeout, f"{count} live workers")
        except AssertionError as exc:
            raise AssertionError(f"{exc} (have {found}){self._tail()}") from None
        return found

    def _remember(self, proc: psutil.Process) -> None:
        if all(p.pid != proc.pid for p in self.registry):
            self.registry.append(proc)

    def remember_descendants(self) -> None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                self._remember(child)

    # -- logs ------------------------------------------------------------------------------
    def logs(self) -> list[dict[str, Any]]:
        """Parsed JSON lines of the log (every line must be one JSON object)."""
        return read_json_lines(self.log_path)

    def events(self, name: str, **keys: Any) -> list[dict[str, Any]]:
        match = event(name, **keys)
        return [line for line in self.logs() if match(line)]

    def wait_for_log(self, predicate: LogPredicate, timeout: float = DEFAULT_WAIT,
                     count: int = 1) -> dict[str, Any]:
        """The first log line matching ``predicate`` (after ``count`` such lines exist)."""
        def check() -> dict[str, Any] | None:
            found = [line for line in self.logs() if predicate(line)]
            if len(found) >= count:
                return found[count - 1]
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({self.proc.returncode}) while waiting"
                                     f"{self._tail()}")
            return None
        try:
            return dict(wait_until(check, timeout, "a log line"))
        except AssertionError as exc:
            raise AssertionError(f"{exc}{self._tail()}") from None

    def _tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-n:]
        except FileNotFoundError:
            lines = []
        err = self.stderr_path.read_text(errors="replace")[-2000:] if \
            self.stderr_path.exists() else ""
        return "\n--- log tail:\n" + "\n".join(lines) + "\n--- stderr:\n" + err

    # -- the database ----------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db, timeout=30)
        conn.row_factory = sqlite3.Row
        return conn

    def insert_job(self, workflow: str, state: Any = None, queue: str | None = "default",
                   raw_state: str | None = None) -> str:
        """Enqueue the CONTRACT section 5 way (plain SQL); returns the generated uuid."""
        text = raw_state if raw_state is not None else json.dumps(state or {})
        with contextlib.closing(self.connect()) as conn, conn:
            cur = conn.execute("INSERT INTO jobs (queue, workflow, state) VALUES (?, ?, ?)",
                               (queue, workflow, text))
            uuid = conn.execute("SELECT uuid FROM jobs WHERE id = ?",
                                (cur.lastrowid,)).fetchone()[0]
        return str(uuid)

    def row(self, key: str | int) -> dict[str, Any]:
        column = "id" if isinstance(key, int) else "uuid"
        with contextlib.closing(self.connect()) as conn:
            found = conn.execute(f"SELECT * FROM jobs WHERE {column} = ?", (key,)).fetchone()
        assert found is not None, f"no jobs row {key}"
        return dict(found)

    def history(self, uuid: str) -> list[dict[str, Any]]:
        with contextlib.closing(self.connect()) as conn:
            rows = conn.execute("SELECT h.* FROM history h JOIN jobs j ON j.id = h.job_id "
                                "WHERE j.uuid = ? ORDER BY h.id", (uuid,)).fetchall()
        return [dict(r) for r in rows]

    def wait_for_status(self, uuid: str, statuses: str | Iterable[str],
                        timeout: float = DEFAULT_WAIT) -> dict[str, Any]:
        wanted = {statuses} if isinstance(statuses, str) else set(statuses)
        last: dict[str, Any] = {}

        def check() -> dict[str, Any] | None:
            nonlocal last
            last = self.row(uuid)
            return last if last["status"] in wanted else None
        try:
            return dict(wait_until(check, timeout, f"workflow {uuid} to be {sorted(wanted)}"))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last row: {last}{self._tail()}") from None

    # -- what steps did ------------------------------------------------------------------
    def effects(self, uuid: str | None = None) -> list[tuple[str, str, int, int]]:
        """(uuid, step, pid, attempt) per step execution, from e2eapp's effects file."""
        try:
            text = (self.dir / "effects.txt").read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            u, step, pid, attempt = line.split()
            if uuid is None or u == uuid:
                out.append((u, step, int(pid), int(attempt)))
        return out

    def step_counts(self, uuid: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, step, _, _ in self.effects(uuid):
            counts[step] = counts.get(step, 0) + 1
        return counts

    def wait_started(self, uuid: str, timeout: float = DEFAULT_WAIT) -> int:
        """Wait for a blocking step of ``uuid`` to begin; returns the pid running it."""
        path = self.dir / f"started-{uuid}"
        wait_until(path.exists, timeout, f"{path.name}{self._tail()}")
        return int(path.read_text())

    def release(self, uuid: str | None = None) -> None:
        (self.dir / (f"release-{uuid}" if uuid else "release-all")).touch()


def running(proc: psutil.Process) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for init: it is dead all the same)."""
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def kill_all(procs: list[psutil.Process]) -> None:
    """SIGKILL every recorded process still alive (psutil refuses a reused pid), and wait."""
    for proc in list(procs):
        with contextlib.suppress(psutil.Error):
            procs.extend(c for c in proc.children(recursive=True) if c not in procs)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    wait_until(lambda: not any(running(p) for p in procs), 10, "killed processes to die")


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Make Daemons on (sub)directories of tmp_path; all their processes die at teardown."""
    registry: list[psutil.Process] = []
    made: list[Daemon] = []

    def make(name: str = "") -> Daemon:
        where = tmp_path / name if name else tmp_path
        where.mkdir(parents=True, exist_ok=True)
        d = Daemon(where, registry)
        made.append(d)
        return d

    try:
        yield make
    finally:
        for d in made:
            if d.alive():
                d.remember_descendants()
        kill_all(registry)
        for d in made:
            if d.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    d.proc.wait(5)


@pytest.fixture
def daemon(daemon_factory: Callable[..., Daemon]) -> Daemon:
    return daemon_factory()
