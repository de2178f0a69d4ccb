"""SQLiteStore: the default store, one SQLite file in WAL mode shared by every process.

Every write is one short ``BEGIN IMMEDIATE`` transaction (so the busy timeout
applies), retried with jittered backoff when the database stays locked; no
step code ever runs inside a transaction. A connection belongs to the process
that opened it: open the store after ``fork``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from .. import clock, codec
from ..errors import (
    LeaseLost,
    QueueNotFound,
    SchemaTooNew,
    StoreError,
    TemplateNotFound,
    WorkflowNotFound,
)
from ..model import (
    Attempt,
    Claimed,
    Lease,
    QueueSpec,
    Step,
    Workflow,
    WorkflowQuery,
    WorkflowStatus,
    iso,
    parse_iso,
    utcnow,
)
from . import schema
from .base import DEFAULT_MAX_CRASHES, Interrupted, Resumable, closing_error
from .wake import ChangeWaiter

T = TypeVar("T")

_WF_COLUMNS = ("id, uuid, queue, workflow, state, display_name, metadata, status, current_step, "
               "error, created_at, updated_at, steps, token, attempt, crashes, cancel_requested")


class _BadText(str):
    """Text read from a column that is not valid UTF-8 (an outside program wrote bytes)."""


def _lenient_ts(value: Any) -> datetime:
    try:
        return parse_iso(value)
    except (ValueError, TypeError, AttributeError):
        return datetime.fromtimestamp(0, UTC)


def _bad_text(exc: sqlite3.OperationalError) -> bool:
    return "decode" in str(exc).lower()


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _BadText(raw.decode("utf-8", "replace"))


def _now_iso() -> str:
    return iso(utcnow())


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SQLiteStore:
    """The default store. ``path`` is a file (created with mode 0640) or ``":memory:"``.

    ``readonly`` opens for reading only; ``create=False`` refuses to create the file or to
    give ewfd's tables to a database that does not have them (what ``ewfd ctl`` wants).
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "normal",
                 busy_timeout: float = 5.0, busy_give_up: float = 10.0, readonly: bool = False,
                 create: bool = True) -> None:
        self.path = os.fspath(path)
        if synchronous.lower() not in ("normal", "full"):
            raise ValueError("synchronous must be 'normal' or 'full'")
        self._synchronous = synchronous.upper()
        self._busy_timeout = busy_timeout
        self._busy_give_up = busy_give_up   # then StoreError("database is locked"): callers log
        self._readonly = readonly
        self._create = create and not readonly
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._waiter: ChangeWaiter | None = None
        self._conn = self._connect()
        self._last_data_version = self._data_version()
        self.clock = self._host_clock()

    # -- connection ----------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        memory = self.path == ":memory:"
        if not memory and not os.path.exists(self.path) and not self._create:
            raise StoreError(f"no database at {self.path}")
        if not memory and not self._readonly and not os.path.exists(self.path):
            # Create the file ourselves so its mode is 0640 whatever the umask allows;
            # SQLite gives the -wal and -shm files the same mode.
            try:
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o640))
            except OSError as exc:
                raise StoreError(f"cannot create database {self.path}: {exc.strerror}") from exc
        conn: sqlite3.Connection | None = None
        try:
            if self._readonly:
                uri = f"file:{os.path.abspath(self.path)}?mode=ro"
                conn = sqlite3.connect(uri, uri=True, isolation_level=None,
                                       check_same_thread=False, timeout=self._busy_timeout)
            else:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=self._busy_timeout, cached_statements=256)
            conn.row_factory = sqlite3.Row
            self._check_version(conn)   # before anything writes to a file we may not own
            if not memory and not self._readonly:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StoreError(f"{self.path}: could not switch to WAL mode (got {mode})")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA journal_size_limit=67108864")
            self._migrate(conn)
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"{self.path}: {exc}{_diagnose(self.path)}") from exc
            raise
        return conn

    def _check_version(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and not self._create:
            raise StoreError(f"{self.path} is not an ewfd database (no ewfd schema): "
                             "start ewfd run on it first")
        if version > schema.VERSION:
            raise SchemaTooNew(
                f"{self.path}: database schema version {version} is newer than this ewfd "
                f"understands ({schema.VERSION}); upgrade ewfd")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == schema.VERSION or self._readonly:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._check_version(conn)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for index in range(version, schema.VERSION):
                for statement in schema.MIGRATIONS[index].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version={schema.VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _host_clock(self) -> clock.HostClock:
        """The host clock every process on this database agrees on: its anchor is recorded
        per boot by the first process to open the database after the boot."""
        boot = clock.boot_id()
        if not boot or self.path == ":memory:":
            return clock.local()
        try:
            rows = self._read("SELECT anchor FROM clocks WHERE boot_id = ?", (boot,))
        except StoreError:   # read-only, on a database an older ewfd made
            return clock.local()
        if rows:
            return clock.HostClock(float(rows[0][0]))
        if self._readonly:
            return clock.local()
        mine = clock.local().anchor

        def tx(conn: sqlite3.Connection) -> float:
            conn.execute("DELETE FROM clocks WHERE boot_id <> ?", (boot,))
            conn.execute("INSERT OR IGNORE INTO clocks (boot_id, anchor) VALUES (?, ?)",
                          (boot, mine))
            row = conn.execute("SELECT anchor FROM clocks WHERE boot_id = ?", (boot,)).fetchone()
            return float(row[0])

        return clock.HostClock(self._write(tx))

    def _check_pid(self) -> None:
        if os.getpid() != self._pid:
            raise StoreError(
                f"SQLiteStore opened in process {self._pid} used in process {os.getpid()}: "
                "open the store after fork")

    def close(self) -> None:
        with self._lock:
            if self._waiter is not None:
                self._waiter.close()
            if os.getpid() == self._pid:
                self._conn.close()

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        self._check_pid()
        with self._lock:
            try:
                try:
                    return self._conn.execute(sql, params).fetchall()
                except sqlite3.OperationalError as exc:
                    if not _bad_text(exc):
                        raise
                    return self._lenient(lambda: self._conn.execute(sql, params).fetchall())
            except (sqlite3.DatabaseError, sqlite3.ProgrammingError) as exc:
                raise StoreError(f"{self.path}: {exc}") from exc

    def _lenient(self, query: Callable[[], T]) -> T:
        """Run a query again reading text that is not UTF-8 (written by an outside program):
        the fast default decoder stays on every other path."""
        self._conn.text_factory = _text
        try:
            return query()
        finally:
            self._conn.text_factory = str

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one IMMEDIATE transaction, retrying while the database is locked."""
        self._check_pid()
        deadline = time.monotonic() + self._busy_give_up
        delay = 0.005
        while True:
            with self._lock:
                conn = self._conn
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = fn(conn)
                        conn.execute("COMMIT")
                        return result
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or time.monotonic() > deadline:
                        raise StoreError(f"{self.path}: {exc}") from exc
                except sqlite3.DatabaseError as exc:
                    raise StoreError(f"{self.path}: {exc}") from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)

    # -- rows -> objects ------------------------------------------------------------
    @staticmethod
    def _steps(text: str | None) -> list[Step]:
        if not text:
            return []
        return [Step.from_dict(d) for d in json.loads(text)]

    def _workflow(self, row: sqlite3.Row, *, typed: bool = True) -> Workflow:
        """A stored row as a Workflow, for reading: a garbage row written by an outside
        program (past the schema's checks) still lists, with defaults where it is unreadable,
        so one bad row cannot hide all the others from ``ewfd ctl``."""
        try:
            state = codec.decode_state(row["state"]) if typed else codec.decode_raw(row["state"])
        except Exception:
            state = {}
        try:
            metadata = json.loads(row["metadata"]) if row["metadata"] else {}
        except (ValueError, TypeError):
            metadata = {}
        try:
            steps = self._steps(row["steps"])
        except (ValueError, TypeError, KeyError):
            steps = []
        current = row["current_step"]
        return Workflow(
            uuid=str(row["uuid"]), name=str(row["workflow"]), status=WorkflowStatus(row["status"]),
            state=state if isinstance(state, dict) else {},
            current_step=current if isinstance(current, int) else -1,
            created_at=_lenient_ts(row["created_at"]), steps=steps,
            queue=row["queue"], display_name=str(row["display_name"] or ""),
            metadata=metadata if isinstance(metadata, dict) else {}, error=row["error"],
            updated_at=_lenient_ts(row["updated_at"]),
        )

    def _claimed(self, row: sqlite3.Row, owner: str) -> Claimed:
        """The claimed row as objects. A row an outside program filled with what the schema
        could not refuse (bad UTF-8, a BLOB...) comes back with ``problem`` set, naming the
        column, so the worker rejects it (``job.rejected``) instead of crashing on it."""
        problems: list[str] = []

        def column(name: str, parse: Callable[[Any], Any], default: Any) -> Any:
            value = row[name]
            try:
                if isinstance(value, _BadText):
                    raise ValueError("not valid UTF-8 text")
                return parse(value)
            except Exception as exc:
                problems.append(f"{name} {value!r:.60}: {exc}")
                return default

        def text(value: Any) -> str:
            if not isinstance(value, str):
                raise ValueError(f"expected text, got {type(value).__name__}")
            return value

        def step_index(value: Any) -> int:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError("expected an integer >= 0")
            return value

        def metadata(value: Any) -> dict[str, str]:
            data = json.loads(text(value)) if value else {}
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            return {str(k): str(v) for k, v in data.items()}

        now = utcnow()
        wf = Workflow(
            uuid=str(row["uuid"]), name=column("workflow", text, "?"),
            status=WorkflowStatus.RUNNING, current_step=column("current_step", step_index, 0),
            created_at=column("created_at", parse_iso, now),
            queue=row["queue"], display_name=str(row["display_name"] or ""), error=None,
            updated_at=column("updated_at", parse_iso, now),
            metadata=column("metadata", metadata, {}))
        steps_known = row["steps"] is not None
        if steps_known:
            wf.steps = column("steps", self._steps, [])
        state = column("state", text, "{}")
        lease = Lease(row["id"], row["token"], owner, row["attempt"], row["crashes"])
        return Claimed(lease, wf, state, steps_known, bool(row["cancel_requested"]),
                       "; ".join(problems) or None)

    # -- workflows ----------------------------------------------------------------------
    def create_workflow(self, wf: Workflow, state_json: str) -> Workflow:
        now = _now_iso()
        steps = json.dumps([s.to_dict() for s in wf.steps]) if wf.steps else None

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO jobs (uuid, queue, workflow, state, display_name, metadata, status,"
                " current_step, created_at, updated_at, steps) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (wf.uuid, wf.queue, wf.name, state_json, wf.display_name,
                 json.dumps(wf.metadata), WorkflowStatus.PENDING.value, wf.current_step,
                 iso(wf.created_at), now, steps))

        self._write(tx)
        wf.status = WorkflowStatus.PENDING
        wf.updated_at = parse_iso(now)
        return wf

    def load_workflow(self, uuid: str, *, typed: bool = True) -> Workflow:
        rows = self._read(f"SELECT {_WF_COLUMNS} FROM jobs WHERE uuid = ?", (uuid,))
        if not rows:
            raise WorkflowNotFound(f"no workflow {uuid}")
        return self._workflow(rows[0], typed=typed)

    def list_workflows(self, *, status: WorkflowStatus | None = None, queue: str | None = None,
                       name: str | None = None, limit: int | None = None,
                       typed: bool = True) -> list[Workflow]:
        where, params = [], []
        for column, value in (("status", status), ("queue", queue), ("workflow", name)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(str(value))
        sql = f"SELECT {_WF_COLUMNS} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._workflow(r, typed=typed) for r in self._read(sql, params)]

    def delete_workflow(self, uuid: str) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            row = conn.execute("DELETE FROM jobs WHERE uuid = ? RETURNING id", (uuid,)).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM history WHERE job_id = ?", (row[0],))
            return True

        return self._write(tx)

    def history(self, uuid: str) -> list[Attempt]:
        rows = self._read("SELECT id FROM jobs WHERE uuid = ?", (uuid,))
        if not rows:
            raise WorkflowNotFound(f"no workflow {uuid}")
        return [
            Attempt(r["step"], r["step_index"], r["attempt"], parse_iso(r["started_at"]),
                    parse_iso(r["finished_at"]) if r["finished_at"] else None, r["duration_ms"],
                    r["outcome"], r["error"], r["worker_pid"])
            for r in self._read("SELECT * FROM history WHERE job_id = ? ORDER BY id", (rows[0][0],))
        ]

    def cancel_workflow(self, uuid: str) -> WorkflowStatus | None:
        return self._write(lambda conn: self._cancel(conn, uuid, _now_iso()))

    @staticmethod
    def _cancel(conn: sqlite3.Connection, uuid: str, now: str) -> WorkflowStatus | None:
        row = conn.execute("SELECT status, cancel_requested FROM jobs WHERE uuid = ?",
                           (uuid,)).fetchone()
        if row is None:
            raise WorkflowNotFound(f"no workflow {uuid}")
        status = WorkflowStatus(row[0])
        if status == WorkflowStatus.PENDING:
            conn.execute(
                "UPDATE jobs SET status='cancelled', error='cancelled', lease_owner=NULL, "
                "lease_expires=NULL, token=token+1, updated_at=? WHERE uuid=?", (now, uuid))
            return WorkflowStatus.CANCELLED
        if status == WorkflowStatus.RUNNING and not row[1]:
            conn.execute("UPDATE jobs SET cancel_requested=1, updated_at=? WHERE uuid=?",
                         (now, uuid))
            return WorkflowStatus.RUNNING
        return None

    def retry_workflow(self, uuid: str) -> bool:
        return self._write(lambda conn: self._retry(conn, uuid, _now_iso()))

    @staticmethod
    def _retry(conn: sqlite3.Connection, uuid: str, now: str) -> bool:
        row = conn.execute("SELECT status FROM jobs WHERE uuid = ?", (uuid,)).fetchone()
        if row is None:
            raise WorkflowNotFound(f"no workflow {uuid}")
        cur = conn.execute(
            "UPDATE jobs SET status='pending', error=NULL, attempt=0, crashes=0, "
            "cancel_requested=0, not_before=0, retry_wait=NULL, lease_owner=NULL, "
            "lease_expires=NULL, "
            "updated_at=? WHERE uuid=? AND status IN ('failed','cancelled')", (now, uuid))
        return cur.rowcount == 1

    # -- operator selections and bulk actions -----------------------------------------------
    @staticmethod
    def _selects(query: WorkflowQuery) -> tuple[str, list[Any]]:
        """The WHERE clause (and its parameters) of ``query``."""
        where: list[str] = []
        params: list[Any] = []
        if query.uuid_prefix is not None:     # a range, so the uuid index serves it
            where.append("uuid >= ? AND uuid < ?")
            params += [query.uuid_prefix, query.uuid_prefix + "\U0010ffff"]
        for column, values in (("status", [str(s) for s in query.statuses]),
                               ("queue", list(query.queues)), ("workflow", list(query.names))):
            if values:
                where.append(f"{column} IN ({','.join('?' * len(values))})")
                params += values
        if query.updated_since is not None:
            where.append("updated_at >= ?")
            params.append(iso(datetime.fromtimestamp(query.updated_since, UTC)))
        if query.error is not None:
            where.append("instr(lower(error), lower(?)) > 0")
            params.append(query.error)
        return " AND ".join(where) or "1", params

    def find_workflows(self, query: WorkflowQuery, *, limit: int | None = None,
                       typed: bool = True) -> list[Workflow]:
        where, params = self._selects(query)
        sql = f"SELECT {_WF_COLUMNS} FROM jobs WHERE {where} ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._workflow(r, typed=typed) for r in self._read(sql, params)]

    def find_uuids(self, query: WorkflowQuery, *, limit: int | None = None) -> list[str]:
        where, params = self._selects(query)
        sql = f"SELECT uuid FROM jobs WHERE {where} ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [str(r[0]) for r in self._read(sql, params)]

    def count_workflows(self, query: WorkflowQuery) -> int:
        where, params = self._selects(query)
        return int(self._read(f"SELECT count(*) FROM jobs WHERE {where}", params)[0][0])

    def with_history(self, uuids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(uuids), 500):
            chunk = list(uuids[i:i + 500])
            found.update(str(r[0]) for r in self._read(
                "SELECT uuid FROM jobs WHERE uuid IN ({}) AND EXISTS (SELECT 1 FROM history "
                "WHERE job_id = jobs.id)".format(",".join("?" * len(chunk))), chunk))
        return found

    def retry_workflows(self, uuids: Sequence[str]) -> list[str]:
        def tx(conn: sqlite3.Connection) -> list[str]:
            now, changed = _now_iso(), []
            for uuid in uuids:
                with contextlib.suppress(WorkflowNotFound):
                    if self._retry(conn, uuid, now):
                        changed.append(uuid)
            return changed

        return self._write(tx)

    def cancel_workflows(self, uuids: Sequence[str]) -> dict[str, WorkflowStatus]:
        def tx(conn: sqlite3.Connection) -> dict[str, WorkflowStatus]:
            now, changed = _now_iso(), {}
            for uuid in uuids:
                with contextlib.suppress(WorkflowNotFound):
                    after = self._cancel(conn, uuid, now)
                    if after is not None:
                        changed[uuid] = after
            return changed

        return self._write(tx)

    def _prune_where(self, older_than: float,
                     statuses: Sequence[WorkflowStatus]) -> tuple[str, list[Any]]:
        finished = [str(s) for s in statuses if WorkflowStatus(s).finished]
        if not finished:
            raise ValueError("prune only deletes finished workflows (completed/failed/cancelled)")
        marks = ",".join("?" * len(finished))
        cutoff = iso(datetime.fromtimestamp(older_than, UTC))
        return f"status IN ({marks}) AND updated_at < ?", [*finished, cutoff]

    def count_prunable(self, *, older_than: float, statuses: Sequence[WorkflowStatus]) -> int:
        where, params = self._prune_where(older_than, statuses)
        return int(self._read(f"SELECT count(*) FROM jobs WHERE {where}", params)[0][0])

    def prune(self, *, older_than: float, statuses: Sequence[WorkflowStatus],
              batch: int = 500) -> Iterator[int]:
        where, params = self._prune_where(older_than, statuses)   # raises before iteration
        return self._prune(where, params, batch)

    def _prune(self, where: str, params: list[Any], batch: int) -> Iterator[int]:

        def tx(conn: sqlite3.Connection) -> int:
            ids = [r[0] for r in conn.execute(
                f"SELECT id FROM jobs WHERE {where} LIMIT {int(batch)}", params)]
            if not ids:
                return 0
            marks = ",".join("?" * len(ids))
            conn.execute(f"DELETE FROM history WHERE job_id IN ({marks})", ids)
            conn.execute(f"DELETE FROM jobs WHERE id IN ({marks})", ids)
            return len(ids)

        while True:
            n = self._write(tx)
            if not n:
                return
            yield n

    def resumable(self) -> list[Resumable]:
        rows = self._read(
            "SELECT uuid, status, lease_owner, lease_expires FROM jobs WHERE queue IS NULL AND "
            "status IN ('pending','running') ORDER BY id")
        return [Resumable(r[0], WorkflowStatus(r[1]), r[2], r[3]) for r in rows]

    # -- claiming and fenced writes ------------------------------------------------------------
    _CLAIM_SET = ("status='running', lease_owner=:owner, lease_expires=:expires, token=token+1, "
                  "step_started_at=:now, updated_at=:now")

    # Due: its time has come on the host clock, or it lies further ahead than its own wait
    # (written under another boot's clock): a retry never waits longer than its backoff.
    _DUE = "(not_before <= :t OR not_before > :t + retry_wait)"

    def claim(self, queue: str, owner: str, lease: float) -> Claimed | None:
        now = self.clock.now()
        params = {"owner": owner, "expires": now + lease, "now": _now_iso(), "queue": queue,
                  "t": now}
        sql = (f"UPDATE jobs SET {self._CLAIM_SET} WHERE id = (SELECT id FROM jobs "
               f"WHERE status='pending' AND queue=:queue AND {self._DUE} ORDER BY id LIMIT 1) "
               "AND NOT EXISTS (SELECT 1 FROM queues WHERE name=:queue AND "
               "(paused OR jobs.id > drain_after)) "
               f"RETURNING {_WF_COLUMNS}")

        def tx(conn: sqlite3.Connection) -> Claimed | None:
            try:
                row = conn.execute(sql, params).fetchone()
            except sqlite3.OperationalError as exc:
                if not _bad_text(exc):
                    raise
                # RETURNING runs the whole UPDATE first: the row is ours; read it leniently
                row = self._lenient(lambda: conn.execute(
                    f"SELECT {_WF_COLUMNS} FROM jobs WHERE status='running' AND "
                    "lease_owner=:owner AND step_started_at=:now ORDER BY id DESC LIMIT 1",
                    params).fetchone())
            return None if row is None else self._claimed(row, owner)

        return self._write(tx)

    def claim_workflow(self, uuid: str, owner: str, lease: float) -> Claimed | None:
        now = self.clock.now()
        params = {"owner": owner, "expires": now + lease, "now": _now_iso(), "uuid": uuid}
        sql = (f"UPDATE jobs SET {self._CLAIM_SET} WHERE uuid=:uuid AND status='pending' "
               f"RETURNING {_WF_COLUMNS}")

        def tx(conn: sqlite3.Connection) -> Claimed | None:
            row = conn.execute(sql, params).fetchone()
            return None if row is None else self._claimed(row, owner)

        return self._write(tx)

    @staticmethod
    def _history(conn: sqlite3.Connection, job_id: int, a: Attempt) -> None:
        conn.execute(
            "INSERT INTO history (job_id, step, step_index, attempt, started_at, finished_at, "
            "duration_ms, outcome, error, worker_pid) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (job_id, a.step, a.step_index, a.attempt, iso(a.started_at),
             iso(a.finished_at) if a.finished_at else None, a.duration_ms, a.outcome, a.error,
             a.worker_pid))

    def _fenced(self, conn: sqlite3.Connection, lease: Lease, sets: str,
                params: dict[str, Any]) -> sqlite3.Row:
        row = conn.execute(
            f"UPDATE jobs SET {sets}, steps=COALESCE(steps, :steps), updated_at=:now "
            "WHERE id=:id AND token=:token AND status='running' RETURNING cancel_requested",
            {**params, "id": lease.job_id, "token": lease.token, "steps": lease.steps_json,
             "now": params.get("now") or _now_iso()}).fetchone()
        if row is None:
            raise LeaseLost(f"lease on workflow #{lease.job_id} (token {lease.token}) was lost")
        result: sqlite3.Row = row
        return result

    def save_step(self, lease: Lease, *, step_index: int, state_json: str, attempt: Attempt,
                  completed: bool) -> bool:
        now = _now_iso()
        if completed:
            sets = ("state=:state, current_step=:next, status='completed', attempt=0, crashes=0, "
                    "error=NULL, lease_owner=NULL, lease_expires=NULL")
        else:
            sets = ("state=:state, current_step=:next, attempt=0, crashes=0, "
                    "step_started_at=:now")
        params = {"state": state_json, "next": step_index + 1, "now": now}

        def tx(conn: sqlite3.Connection) -> bool:
            row = self._fenced(conn, lease, sets, params)
            self._history(conn, lease.job_id, attempt)
            return bool(row[0])

        return self._write(tx)

    def record_attempt(self, lease: Lease, *, attempt: Attempt) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            row = self._fenced(conn, lease, "attempt=:attempt", {"attempt": attempt.attempt})
            self._history(conn, lease.job_id, attempt)
            return bool(row[0])

        return self._write(tx)

    def release(self, lease: Lease, *, status: WorkflowStatus, error: str | None = None,
                attempt: Attempt | None = None, retry_in: float = 0.0) -> WorkflowStatus:
        sets = ("status=:status, error=:error, not_before=:not_before, retry_wait=:wait, "
                "lease_owner=NULL, lease_expires=NULL")
        wait = retry_in if retry_in > 0 else None
        params: dict[str, Any] = {"status": str(status), "error": error, "wait": wait,
                                  "not_before": self.clock.now() + wait if wait else 0.0}
        if attempt is not None and attempt.outcome == "failed":
            sets += ", attempt=:attempt"
            params["attempt"] = attempt.attempt
        if status == WorkflowStatus.PENDING:   # a cancel requested meanwhile wins
            sets = sets.replace("status=:status, error=:error",
                                "status=CASE WHEN cancel_requested THEN 'cancelled' ELSE "
                                ":status END, error=CASE WHEN cancel_requested THEN "
                                "'cancelled' ELSE :error END")
            sets += ", token=token+1"

        def tx(conn: sqlite3.Connection) -> WorkflowStatus:
            row = self._fenced(conn, lease, sets, params)
            if attempt is not None:
                self._history(conn, lease.job_id, attempt)
            if status == WorkflowStatus.PENDING and row[0]:
                return WorkflowStatus.CANCELLED
            return WorkflowStatus(status)

        return self._write(tx)

    def held_by(self, owner: str) -> list[Claimed]:
        rows = self._read(f"SELECT {_WF_COLUMNS} FROM jobs WHERE status='running' AND "
                          "lease_owner = ?", (owner,))
        return [self._claimed(r, owner) for r in rows]

    def cancel_requested(self, lease: Lease) -> bool:
        rows = self._read("SELECT cancel_requested FROM jobs WHERE id=? AND token=? AND "
                          "status='running'", (lease.job_id, lease.token))
        if not rows:
            raise LeaseLost(f"lease on workflow #{lease.job_id} (token {lease.token}) was lost")
        return bool(rows[0][0])

    def renew_leases(self, owners: Sequence[str], lease: float) -> int:
        if not owners:
            return 0
        marks = ",".join("?" * len(owners))

        def tx(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                f"UPDATE jobs SET lease_expires=? WHERE status='running' AND lease_owner IN "
                f"({marks})", (self.clock.now() + lease, *owners))
            return cur.rowcount

        return self._write(tx)

    def interrupt(self, *, owner: str | None = None, expired: bool = False,
                  reason: str = "worker died", crash: bool = True) -> list[Interrupted]:
        if owner is None and not expired:
            raise ValueError("interrupt needs an owner or expired=True")
        params: list[Any]
        if owner is not None:
            cond, params = "j.lease_owner = ?", [owner]
        else:
            cond, params = "j.lease_expires < ?", [self.clock.now()]
            # A cheap read first: an idle daemon must not write every time it looks.
            if not self._read(f"SELECT 1 FROM jobs j WHERE j.status='running' AND {cond} "
                              "LIMIT 1", params):
                return []
        now = utcnow()

        def tx(conn: sqlite3.Connection) -> list[Interrupted]:
            out = []
            rows = conn.execute(
                "SELECT j.id, j.uuid, j.workflow, j.queue, j.current_step, j.steps, j.crashes, "
                "j.attempt, j.step_started_at, j.lease_owner, j.cancel_requested, "
                "q.max_crashes FROM jobs j "
                f"LEFT JOIN queues q ON q.name = j.queue WHERE j.status='running' AND {cond}",
                params).fetchall()
            for r in rows:
                step = self._step_name(conn, r["workflow"], r["steps"], r["current_step"])
                crashes = r["crashes"] + int(crash)
                limit = r["max_crashes"] or DEFAULT_MAX_CRASHES
                started = parse_iso(r["step_started_at"]) if r["step_started_at"] else now
                pid = _owner_pid(r["lease_owner"])
                self._history(conn, r["id"], Attempt(
                    step, r["current_step"], r["attempt"] + 1, started, now,
                    (now - started).total_seconds() * 1000, "interrupted", reason, pid))
                error: str | None
                if r["cancel_requested"]:   # it was to stop at its next step boundary: now
                    status, error = WorkflowStatus.CANCELLED, "cancelled"
                elif crash and crashes >= limit:
                    status = WorkflowStatus.FAILED
                    error = f"step {step}: worker died {crashes} times (last: {reason})"
                else:
                    status, error = WorkflowStatus.PENDING, None
                conn.execute(
                    "UPDATE jobs SET status=?, error=?, crashes=?, token=token+1, "
                    "lease_owner=NULL, lease_expires=NULL, updated_at=? WHERE id=?",
                    (str(status), error, crashes, iso(now), r["id"]))
                out.append(Interrupted(r["uuid"], r["workflow"], r["queue"], step, crashes,
                                       status, error))
            return out

        return self._write(tx)

    @staticmethod
    def _step_name(conn: sqlite3.Connection, workflow: str, steps: str | None, index: int) -> str:
        if steps is None:
            row = conn.execute("SELECT steps FROM templates WHERE name=?", (workflow,)).fetchone()
            steps = row[0] if row else None
        try:
            return str(json.loads(steps or "[]")[index]["name"])
        except (ValueError, IndexError, KeyError, TypeError):
            return f"#{index}"

    def reject_unknown_queues(self) -> list[tuple[str, str]]:
        where = ("status='pending' AND queue IS NOT NULL AND "
                 "queue NOT IN (SELECT name FROM queues)")
        if not self._read(f"SELECT 1 FROM jobs WHERE {where} LIMIT 1"):
            return []

        def tx(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            out = []
            for r in conn.execute(f"SELECT id, uuid, queue FROM jobs WHERE {where}").fetchall():
                error = (f"unknown queue {r['queue']!r}: no configured or created queue has "
                         "that name")
                conn.execute("UPDATE jobs SET status='failed', error=?, token=token+1, "
                             "updated_at=? WHERE id=?", (error, _now_iso(), r["id"]))
                out.append((r["uuid"], error))
            return out

        return self._write(tx)

    def lease_owners(self) -> list[str]:
        return [r[0] for r in self._read("SELECT DISTINCT lease_owner FROM jobs WHERE "
                                         "status='running' AND lease_owner IS NOT NULL")]

    # -- templates -------------------------------------------------------------------------
    def save_template(self, name: str, steps: Sequence[dict[str, Any]]) -> None:
        text = json.dumps(list(steps))
        self._write(lambda conn: conn.execute(
            "INSERT INTO templates (name, steps, updated_at) VALUES (?,?,?) ON CONFLICT(name) "
            "DO UPDATE SET steps=excluded.steps, updated_at=excluded.updated_at "
            "WHERE steps IS NOT excluded.steps", (name, text, _now_iso())))

    def load_template(self, name: str) -> list[dict[str, Any]]:
        rows = self._read("SELECT steps FROM templates WHERE name=?", (name,))
        if not rows:
            raise TemplateNotFound(f"no template {name!r} in {self.path}")
        return list(json.loads(rows[0][0]))

    def load_templates(self) -> dict[str, list[dict[str, Any]]]:
        return {r[0]: json.loads(r[1]) for r in
                self._read("SELECT name, steps FROM templates ORDER BY name")}

    # -- queues ------------------------------------------------------------------------------
    _QUEUE_FIELDS = ("workers", "poll_interval", "auto_delete", "delete_after", "pop_timeout",
                     "lease", "max_crashes", "max_tasks_per_worker", "max_memory", "origin",
                     "defined_in")

    def save_queue(self, spec: QueueSpec) -> None:
        cols = ", ".join(self._QUEUE_FIELDS)
        marks = ", ".join("?" * len(self._QUEUE_FIELDS))
        updates = ", ".join(f"{c}=excluded.{c}" for c in self._QUEUE_FIELDS)
        values = [getattr(spec, c) for c in self._QUEUE_FIELDS]
        self._write(lambda conn: conn.execute(
            f"INSERT INTO queues (name, {cols}, paused, updated_at) VALUES (?, {marks}, ?, ?) "
            f"ON CONFLICT(name) DO UPDATE SET {updates}, updated_at=excluded.updated_at",
            (spec.name, *values, int(spec.paused), _now_iso())))

    def delete_queue(self, name: str) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM queues WHERE name=?", (name,)).rowcount == 0:
                raise QueueNotFound(f"no queue {name!r}")

        self._write(tx)

    def _queue(self, r: sqlite3.Row) -> QueueSpec:
        return QueueSpec(name=r["name"], workers=r["workers"], poll_interval=r["poll_interval"],
                         auto_delete=bool(r["auto_delete"]), delete_after=r["delete_after"],
                         pop_timeout=r["pop_timeout"], lease=r["lease"],
                         max_crashes=r["max_crashes"],
                         max_tasks_per_worker=r["max_tasks_per_worker"],
                         max_memory=r["max_memory"], paused=bool(r["paused"]),
                         draining=r["drain_after"] is not None, origin=r["origin"] or "api",
                         defined_in=r["defined_in"])

    def load_queue(self, name: str) -> QueueSpec:
        rows = self._read("SELECT * FROM queues WHERE name=?", (name,))
        if not rows:
            raise QueueNotFound(f"no queue {name!r}")
        return self._queue(rows[0])

    def load_queues(self) -> list[QueueSpec]:
        return [self._queue(r) for r in self._read("SELECT * FROM queues ORDER BY name")]

    def set_paused(self, name: str, paused: bool) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT paused FROM queues WHERE name=?", (name,)).fetchone()
            if row is None:
                raise QueueNotFound(f"no queue {name!r}")
            conn.execute("UPDATE queues SET paused=?, updated_at=? WHERE name=?",
                         (int(paused), _now_iso(), name))
            return bool(row[0]) != paused

        return self._write(tx)

    def set_draining(self, name: str, draining: bool) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT drain_after FROM queues WHERE name=?", (name,)).fetchone()
            if row is None:
                raise QueueNotFound(f"no queue {name!r}")
            if (row[0] is not None) == draining:
                return False
            conn.execute("UPDATE queues SET drain_after=CASE WHEN ? THEN (SELECT "
                         "coalesce(max(id), 0) FROM jobs) END, updated_at=? WHERE name=?",
                         (draining, _now_iso(), name))
            return True

        return self._write(tx)

    _NEW_ON_DRAINING = ("status='pending' AND id > (SELECT drain_after FROM queues "
                        "WHERE name=jobs.queue)")

    def reject_new_on_draining(self) -> list[tuple[str, str]]:
        if not self._read(f"SELECT 1 FROM jobs WHERE {self._NEW_ON_DRAINING} LIMIT 1"):
            return []

        def tx(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            out = []
            for r in conn.execute(f"SELECT id, uuid, queue FROM jobs WHERE "
                                  f"{self._NEW_ON_DRAINING}").fetchall():
                error = closing_error(r["queue"])
                conn.execute("UPDATE jobs SET status='failed', error=?, token=token+1, "
                             "updated_at=? WHERE id=?", (error, _now_iso(), r["id"]))
                out.append((r["uuid"], error))
            return out

        return self._write(tx)

    def close_drained(self, name: str) -> bool:
        return bool(self._write(lambda conn: conn.execute(
            "DELETE FROM queues WHERE name=? AND drain_after IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM jobs WHERE queue=? AND status IN ('pending','running'))",
            (name, name)).rowcount))

    def queue_stats(self) -> list[dict[str, Any]]:
        stats: dict[str, dict[str, Any]] = {}
        for q in self.load_queues():
            stats[q.name] = {"queue": q.name, "workers": q.workers, "paused": q.paused}
        for r in self._read("SELECT queue, status, count(*) FROM jobs WHERE queue IS NOT NULL "
                            "GROUP BY queue, status"):
            entry = stats.setdefault(r[0], {"queue": r[0], "workers": 0, "paused": False})
            entry[r[1]] = r[2]
        now = utcnow()
        for r in self._read("SELECT queue, min(created_at) FROM jobs WHERE status='pending' AND "
                            "queue IS NOT NULL GROUP BY queue"):
            entry = stats.setdefault(r[0], {"queue": r[0], "workers": 0, "paused": False})
            entry["oldest_pending_age_s"] = (now - parse_iso(r[1])).total_seconds()
        out = []
        for name in sorted(stats):
            entry = stats[name]
            for s in WorkflowStatus:
                entry.setdefault(str(s), 0)
            entry.setdefault("oldest_pending_age_s", None)
            out.append(entry)
        return out

    def queue_activity(self, name: str) -> tuple[int, float | None]:
        open_ = self._read("SELECT count(*) FROM jobs WHERE queue=? AND status IN "
                           "('pending','running')", (name,))[0][0]
        last = self._read("SELECT max(updated_at) FROM (SELECT updated_at FROM jobs WHERE queue=? "
                          "UNION ALL SELECT updated_at FROM queues WHERE name=?)", (name, name))
        text = last[0][0]
        return int(open_), (parse_iso(text).timestamp() if text else None)

    # -- wake-up and housekeeping -------------------------------------------------------
    def due_in(self, queue: str) -> float | None:
        now = self.clock.now()
        rows = self._read(f"SELECT min(CASE WHEN {self._DUE} THEN :t ELSE not_before END) "
                          "FROM jobs WHERE status='pending' AND queue=:queue AND NOT EXISTS "
                          "(SELECT 1 FROM queues WHERE name=:queue AND "
                          "(paused OR jobs.id > drain_after))",
                          {"t": now, "queue": queue})
        return None if rows[0][0] is None else float(rows[0][0]) - now

    @property
    def wakes_on_change(self) -> bool:
        """True when :meth:`wait_for_change` blocks on inotify rather than polling."""
        if self._waiter is None:
            self._waiter = ChangeWaiter(self.path)
        return self._waiter.blocking

    def _data_version(self) -> int:
        return int(self._read("PRAGMA data_version")[0][0])

    def changed(self) -> bool:
        """True when another connection committed since the last call (or the last wait)."""
        version = self._data_version()
        if version == self._last_data_version:
            return False
        self._last_data_version = version
        return True

    def wait_for_change(self, timeout: float) -> None:
        """Return when another connection committed, or after ``timeout``.

        Blocks on inotify where it can; each wake-up costs one ``PRAGMA data_version``.
        A write to the ``-wal`` file comes just *before* its commit is visible (the
        wal-index in ``-shm`` is updated through mmap, which inotify does not see), so
        after an event the version is re-read every millisecond for a short while.
        """
        if self._waiter is None:
            self._waiter = ChangeWaiter(self.path)
        deadline = time.monotonic() + timeout
        hot_until = 0.0
        while True:
            version = self._data_version()
            if version != self._last_data_version:
                self._last_data_version = version
                return
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return
            if not self._waiter.blocking:
                step = min(remaining, 0.05)
            elif now < hot_until:
                step = min(remaining, 0.001)
            else:
                step = remaining
            if self._waiter.wait(step):
                hot_until = time.monotonic() + 0.05

    def maintenance(self) -> None:
        self._read("PRAGMA wal_checkpoint(TRUNCATE)")

    def integrity_check(self) -> str:
        return str(self._read("PRAGMA integrity_check")[0][0])


def _diagnose(path: str) -> str:
    """A hint for SQLite's bare "unable to open database file"."""
    if os.path.isdir(path):
        return " (the path is a directory, not a database file)"
    directory = os.path.dirname(os.path.abspath(path))
    if not os.access(directory, os.W_OK):
        return (f" (the directory {directory} is read-only or not writable: WAL mode needs to "
                "create the -wal and -shm files beside the database)")
    return ""


def _owner_pid(owner: str | None) -> int | None:
    try:
        return int((owner or "").split(":")[1])
    except (IndexError, ValueError):
        return None
