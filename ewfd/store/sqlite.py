"""SQLiteStore: the default store, one SQLite file in WAL mode shared by every process.

Every write is one short ``BEGIN IMMEDIATE`` transaction (so the busy timeout
applies), retried with jittered backoff when the database stays locked; no
step code ever runs inside a transaction, and no exception raised by a signal
handler (a step's timeout, Ctrl-C) surfaces inside one (:mod:`ewfd.critical`). A
connection belongs to the process that opened it: open the store after ``fork``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from .. import clock, codec, critical
from ..errors import (
    DatabaseLost,
    InvalidRow,
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
    StepProgress,
    Workflow,
    WorkflowQuery,
    WorkflowStatus,
    iso,
    parse_iso,
    utcnow,
)
from . import rows as _rows
from . import schema, sqlite_file
from .base import DEFAULT_MAX_CRASHES, Interrupted, Resumable, closing_error
from .wake import ChangeWaiter, Seen

T = TypeVar("T")

_WF_COLUMNS = ("id, uuid, queue, workflow, state, display_name, metadata, status, current_step, "
               "error, created_at, updated_at, steps, token, attempt, crashes, cancel_requested, "
               "not_before, progress")


class _BadText(str):
    """Text read from a column that is not valid UTF-8 (an outside program wrote bytes)."""


def _bad_text(exc: sqlite3.OperationalError) -> bool:
    return "decode" in str(exc).lower()


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _BadText(raw.decode("utf-8", "replace"))


def _now_iso() -> str:
    return iso(utcnow())


_SQLITE_READONLY = 8
_SQLITE_CANTOPEN = 14


def _primary_code(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SQLiteStore:
    """The default store. ``path`` is a file (created with mode 0640) or ``":memory:"``.

    ``readonly`` opens for reading only (read access to the file is enough, even with the
    ``-wal`` and ``-shm`` files gone); ``create=False`` refuses to create the file or to
    give ewfd's tables to a database that does not have them (what ``ewfd ctl`` wants).
    ``expect`` (a :attr:`file_id`) opens only that file: a worker never opens a file that
    replaced the supervisor's. Every write checks the path still names the file opened
    (:class:`DatabaseLost` otherwise).
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "normal",
                 busy_timeout: float = 5.0, busy_give_up: float = 10.0, readonly: bool = False,
                 create: bool = True, expect: sqlite_file.FileId | None = None) -> None:
        self.path = os.fspath(path)
        if synchronous.lower() not in ("normal", "full"):
            raise ValueError("synchronous must be 'normal' or 'full'")
        self._synchronous = synchronous.upper()
        self._busy_timeout = busy_timeout
        self._busy_give_up = busy_give_up   # then StoreError("database is locked"): callers log
        self._readonly = readonly
        self._create = create and not readonly
        self._expect = expect
        self._opened: sqlite_file.FileId | None = None
        self._snapshot: sqlite_file.Snapshot | None = None   # set while read immutable
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._local = threading.local()        # each thread's Seen (see wait_for_change)
        self._commits = 0                      # commits through this store, by any thread
        # Each waiting thread's descriptor; one dies with its thread's Seen, or at close().
        self._waiters: weakref.WeakSet[ChangeWaiter] = weakref.WeakSet()
        self._settler: sqlite3.Connection | None = None   # see settle
        self._settle_lock = threading.Lock()   # not the store's: reads go on meanwhile
        self._conn = self._connect()
        self.clock = self._host_clock()

    # -- connection ----------------------------------------------------------------
    @property
    def file_id(self) -> sqlite_file.FileId | None:
        """(device, inode) of the file opened (None for ``:memory:``): pass it as ``expect``
        to open the same file again, and nothing else."""
        return self._opened

    def _connect(self) -> sqlite3.Connection:
        memory = self.path == ":memory:"
        before = None if memory else self._prepare_file()
        conn: sqlite3.Connection | None = None
        try:
            conn = self._open(memory)
            self._check_version(conn)   # before anything writes to a file we may not own
            if not memory and not self._readonly:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StoreError(f"{self.path}: could not switch to WAL mode (got {mode})")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA journal_size_limit=67108864")
            self._migrate(conn)
            if before is not None:   # the file opened is the one we looked at, and expected
                why = sqlite_file.lost(self.path, before)
                if why is not None:
                    raise DatabaseLost(why)
                self._opened = before
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                hint = _diagnose(self.path, self._readonly)
                raise StoreError(f"{self.path}: {exc}{hint}") from exc
            raise
        return conn

    def _prepare_file(self) -> sqlite_file.FileId:
        """Check the file is there (and is the expected one), or create it when allowed."""
        found = sqlite_file.file_id(self.path)
        if self._expect is not None and found != self._expect:
            raise DatabaseLost(sqlite_file.lost(self.path, self._expect) or "")
        if found is not None:
            return found
        if not self._create:
            raise StoreError(f"no database at {self.path}")
        # Create the file ourselves so its mode is 0640 whatever the umask allows;
        # SQLite gives the -wal and -shm files the same mode.
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o640))
        except OSError as exc:
            raise StoreError(f"cannot create database {self.path}: {exc.strerror}") from exc
        created = sqlite_file.file_id(self.path)
        if created is None:
            raise DatabaseLost(f"database file {self.path} was deleted while it was created")
        return created

    def _sqlite(self, target: str) -> sqlite3.Connection:
        conn = sqlite3.connect(target, uri=target.startswith("file:"), isolation_level=None,
                               check_same_thread=False, timeout=self._busy_timeout,
                               cached_statements=256)
        conn.row_factory = sqlite3.Row
        return conn

    def _open(self, memory: bool) -> sqlite3.Connection:
        if memory:
            return self._sqlite(":memory:")
        if self._readonly:
            return self._open_readonly()
        # mode=rw: SQLite itself refuses to create a file that is not there any more
        return self._sqlite(sqlite_file.uri(self.path, mode="rwc" if self._create else "rw"))

    def _open_readonly(self) -> sqlite3.Connection:
        """``mode=ro`` when SQLite can open the WAL; else, when the WAL holds nothing (a
        clean stop removed it and the directory is not ours to write), ``immutable=1``
        with every read checked against a :class:`~sqlite_file.Snapshot`."""
        self._snapshot = None
        failure: sqlite3.Error | None = None
        for _ in range(3):
            conn = self._sqlite(sqlite_file.uri(self.path, mode="ro"))
            try:
                conn.execute("PRAGMA user_version").fetchone()   # opens the WAL, if it can
                return conn
            except sqlite3.OperationalError as exc:
                conn.close()
                if _primary_code(exc) not in (_SQLITE_READONLY, _SQLITE_CANTOPEN) or \
                        not os.access(self.path, os.R_OK):
                    raise
                failure = exc
            snapshot = sqlite_file.Snapshot.take(self.path)
            if sqlite_file.wal_is_empty(self.path):
                self._snapshot = snapshot
                return self._sqlite(sqlite_file.uri(self.path, mode="ro", immutable="1"))
        raise StoreError(
            f"{self.path}: cannot be read without write access to its directory right now: "
            f"its -wal file holds changes not yet in the database and SQLite cannot use the "
            f"-shm file beside it ({failure}); start ewfd run, or run one ewfd ctl action "
            "with write access, to fold them into the database")

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
        with critical.section():
            self._migrate_now(conn)

    def _migrate_now(self, conn: sqlite3.Connection) -> None:
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
            for waiter in list(self._waiters):
                waiter.close()
            if os.getpid() == self._pid:
                self._conn.close()
                with self._settle_lock:
                    if self._settler is not None:
                        self._settler.close()

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        self._check_pid()
        # In the signal-deferring section too: a read queued behind another thread's write
        # (the lease thread's renewal, waiting on a lock) is a store call a step's timeout
        # must not cut in two either (engine.run's check, then its insert).
        with critical.section(), self._lock:
            for _ in range(5):
                rows = self._read_once(sql, params)
                if self._snapshot is None or self._snapshot.holds():
                    return rows
                # a writer came (or went) while we read the file immutable: read it afresh
                self._conn.close()
                self._conn = self._connect()
            raise StoreError(f"{self.path}: the database kept changing while it was read "
                             "without write access; try again")

    def _read_once(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> list[sqlite3.Row]:
        try:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if not _bad_text(exc):
                    raise
                return self._lenient(lambda: self._conn.execute(sql, params).fetchall())
        except (sqlite3.DatabaseError, sqlite3.ProgrammingError) as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def check_file(self) -> None:
        """Raise :class:`DatabaseLost` when the path no longer names the file opened."""
        if self._opened is not None:
            why = sqlite_file.lost(self.path, self._opened)
            if why is not None:
                raise DatabaseLost(why)

    def _lenient(self, query: Callable[[], T]) -> T:
        """Run a query again reading text that is not UTF-8 (written by an outside program):
        the fast default decoder stays on every other path."""
        with critical.section():   # an exception must not leave the slow decoder in place
            self._conn.text_factory = _text
            try:
                return query()
            finally:
                self._conn.text_factory = str

    def _fetch(self, conn: sqlite3.Connection, sql: str,
               params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Rows read inside a write: text an outside program wrote that is not UTF-8 comes
        back as :class:`_BadText` instead of failing the whole write (a sweep over every row
        must not stop at one it cannot decode)."""
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if not _bad_text(exc):
                raise
            return self._lenient(lambda: conn.execute(sql, params).fetchall())

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one IMMEDIATE transaction, retrying while the database is locked."""
        self._check_pid()
        self.check_file()   # one stat: never write to a file that is not at the path any more
        deadline = time.monotonic() + self._busy_give_up
        delay = 0.005
        while True:
            # The section: a signal handler's exception (a step's timeout, Ctrl-C) surfaces
            # after COMMIT or ROLLBACK, never with the transaction open and the lock held.
            # It is entered before the thread lock: a write waiting for another thread's
            # write (the engine's lease thread) is not cut short either.
            with critical.section(), self._lock:
                conn = self._conn
                try:
                    if conn.in_transaction:   # left open by something that was no signal
                        conn.execute("ROLLBACK")
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        before = conn.total_changes
                        result = fn(conn)
                        conn.execute("COMMIT")
                        if conn.total_changes != before:   # wake this process's waiters
                            self._committed()
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
        except (ValueError, TypeError, KeyError, AttributeError):
            steps = []
        status, problem = _rows.lenient_status(row["status"])
        return Workflow(
            uuid=_rows.lenient_text(row["uuid"]) or "",
            name=_rows.lenient_text(row["workflow"]) or "",
            status=status, state=state if isinstance(state, dict) else {},
            current_step=_rows.lenient_int(row["current_step"], -1),
            created_at=_rows.lenient_time(row["created_at"]) or _rows.EPOCH, steps=steps,
            queue=_rows.lenient_text(row["queue"]),
            display_name=_rows.lenient_text(row["display_name"]) or "",
            metadata={str(k): str(v) for k, v in metadata.items()}
            if isinstance(metadata, dict) else {},
            error=problem or _rows.lenient_text(row["error"]),
            updated_at=_rows.lenient_time(row["updated_at"]),
            progress=_progress(row["progress"]) if status == WorkflowStatus.RUNNING else None,
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

        def metadata(value: Any) -> dict[str, str]:
            data = json.loads(text(value)) if value else {}
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            return {str(k): str(v) for k, v in data.items()}

        now = utcnow()
        wf = Workflow(
            uuid=column("uuid", text, _rows.lenient_text(row["uuid"])),
            name=column("workflow", text, "?"),
            status=WorkflowStatus.RUNNING, current_step=column("current_step", _rows.integer, 0),
            created_at=column("created_at", parse_iso, now),
            queue=_rows.lenient_text(row["queue"]),
            display_name=_rows.lenient_text(row["display_name"]) or "", error=None,
            updated_at=column("updated_at", parse_iso, now),
            metadata=column("metadata", metadata, {}))
        steps_known = row["steps"] is not None
        if steps_known:
            wf.steps = column("steps", _rows.steps, [])
        state = column("state", text, "{}")
        column("not_before", lambda v: _rows.number(v, low=-math.inf), 0.0)
        lease = Lease(row["id"], row["token"], owner, column("attempt", _rows.integer, 0),
                      column("crashes", _rows.integer, 0))
        cancel = column("cancel_requested", _rows.flag, False)
        return Claimed(lease, wf, state, steps_known, cancel, "; ".join(problems) or None)

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
        found = self._read("SELECT id FROM jobs WHERE uuid = ?", (uuid,))
        if not found:
            raise WorkflowNotFound(f"no workflow {uuid}")
        return [_rows.attempt(r) for r in
                self._read("SELECT * FROM history WHERE job_id = ? ORDER BY id", (found[0][0],))]

    def cancel_workflow(self, uuid: str) -> WorkflowStatus | None:
        return self._write(lambda conn: self._cancel(conn, uuid, _now_iso()))

    @staticmethod
    def _cancel(conn: sqlite3.Connection, uuid: str, now: str) -> WorkflowStatus | None:
        row = conn.execute("SELECT status, cancel_requested FROM jobs WHERE uuid = ?",
                           (uuid,)).fetchone()
        if row is None:
            raise WorkflowNotFound(f"no workflow {uuid}")
        status = _rows.status(row[0])
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
        return (f"{schema.FINISHED} AND status IN ({marks}) AND updated_at < ?",
                [*finished, cutoff])

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
        return [Resumable(r[0], WorkflowStatus(r[1]), r[2] if isinstance(r[2], str) else None,
                          r[3] if isinstance(r[3], int | float) else None) for r in rows]

    # -- claiming and fenced writes ------------------------------------------------------------
    _CLAIM_SET = ("status='running', lease_owner=:owner, lease_expires=:expires, token=token+1, "
                  "step_started_at=:now, updated_at=:now, progress=NULL")

    # Due: its time has come on the host clock, or it lies further ahead than its own wait
    # plus a slack (written under another boot's clock): see clock.DUE_SLACK.
    _DUE = f"(not_before <= :t OR not_before > :t + retry_wait + {clock.DUE_SLACK!r})"

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
            f"UPDATE jobs SET {sets}, steps=COALESCE(steps, :steps), updated_at=:now, "
            "progress=NULL "
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

    def save_progress(self, lease: Lease, *, step_index: int, fraction: float,
                      message: str | None) -> None:
        text = json.dumps({"fraction": fraction, "message": message, "step_index": step_index,
                           "updated_at": _now_iso()})

        def tx(conn: sqlite3.Connection) -> None:
            if not conn.execute("UPDATE jobs SET progress=? WHERE id=? AND token=? AND "
                                "status='running' AND current_step=?",
                                (text, lease.job_id, lease.token, step_index)).rowcount:
                raise LeaseLost(f"lease on workflow #{lease.job_id} (token {lease.token}) "
                                f"is no longer at step {step_index}")

        self._write(tx)

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
            cond, params = f"(j.lease_expires < ? OR {_NO_LEASE})", [self.clock.now()]
            # A cheap read first: an idle daemon must not write every time it looks.
            if not self._read(f"SELECT 1 FROM jobs j WHERE j.status='running' AND {cond} "
                              "LIMIT 1", params):
                return []
        now = utcnow()

        def tx(conn: sqlite3.Connection) -> list[Interrupted]:
            out = self._fail_uncounted(conn, cond, params)
            rows = self._fetch(
                conn,
                "SELECT j.id, j.uuid, j.workflow, j.queue, j.current_step, j.steps, j.crashes, "
                "j.attempt, j.step_started_at, j.lease_owner, j.cancel_requested, "
                "q.max_crashes FROM jobs j "
                f"LEFT JOIN queues q ON q.name = j.queue WHERE j.status='running' AND {cond}",
                params)
            for r in rows:
                step = self._step_name(conn, r["workflow"], r["steps"], r["current_step"])
                crashes = r["crashes"] + int(crash)
                limit = _max_crashes(r["max_crashes"])
                started = _rows.lenient_time(r["step_started_at"], now) or now
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
                out.append(Interrupted(str(_rows.lenient_text(r["uuid"])),
                                       str(_rows.lenient_text(r["workflow"])),
                                       _rows.lenient_text(r["queue"]), step, crashes, status,
                                       error))
            return out

        return self._write(tx)

    def _fail_uncounted(self, conn: sqlite3.Connection, cond: str,
                        params: list[Any]) -> list[Interrupted]:
        """Running rows whose ``crashes`` or ``attempt`` a person set to something that is
        not a count: how often the step ran is unknown, so they fail, naming the column."""
        out = []
        for r in self._fetch(
                conn,
                "SELECT j.id, j.uuid, j.workflow, j.queue, j.current_step, j.steps, j.crashes, "
                f"j.attempt FROM jobs j WHERE j.status='running' AND {cond} AND NOT ("
                "typeof(j.crashes)='integer' AND j.crashes >= 0 AND "
                "typeof(j.attempt)='integer' AND j.attempt >= 0)", params):
            problems = []
            for column in ("crashes", "attempt"):
                try:
                    _rows.integer(r[column], column)
                except InvalidRow as exc:
                    problems.append(str(exc))
            error = f"invalid row: {'; '.join(problems)}"
            conn.execute("UPDATE jobs SET status='failed', error=?, token=token+1, "
                         "lease_owner=NULL, lease_expires=NULL, updated_at=? WHERE id=?",
                         (error, _now_iso(), r["id"]))
            step = self._step_name(conn, r["workflow"], r["steps"], r["current_step"])
            out.append(Interrupted(str(_rows.lenient_text(r["uuid"])),
                                   str(_rows.lenient_text(r["workflow"])),
                                   _rows.lenient_text(r["queue"]), step, 0,
                                   WorkflowStatus.FAILED, error))
        return out

    @staticmethod
    def _step_name(conn: sqlite3.Connection, workflow: str, steps: str | None, index: int) -> str:
        try:
            if steps is None:
                row = conn.execute("SELECT steps FROM templates WHERE name=?",
                                   (workflow,)).fetchone()
                steps = row[0] if row else None
            return str(json.loads(steps or "[]")[index]["name"])
        except (ValueError, IndexError, KeyError, TypeError, sqlite3.OperationalError):
            return f"#{index}"

    def reject_unknown_queues(self) -> list[tuple[str, str]]:
        """Also fails the other pending rows no worker would ever take (see ``_UNRUNNABLE``)."""
        if not self._read(f"SELECT 1 FROM jobs WHERE {_UNRUNNABLE} LIMIT 1"):
            return []

        def tx(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            out = []
            for r in self._fetch(conn, "SELECT id, uuid, queue, steps IS NULL AS by_sql, "
                                 f"not_before FROM jobs WHERE {_UNRUNNABLE}"):
                error = _unrunnable(r)
                conn.execute("UPDATE jobs SET status='failed', error=?, token=token+1, "
                             "updated_at=? WHERE id=?", (error, _now_iso(), r["id"]))
                out.append((str(_rows.lenient_text(r["uuid"])), error))
            return out

        return self._write(tx)

    def lease_owners(self) -> list[str]:
        return [r[0] for r in self._read("SELECT DISTINCT lease_owner FROM jobs WHERE "
                                         "status='running' AND typeof(lease_owner) = 'text'")]

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
        try:
            return _rows.step_dicts(rows[0][0])
        except InvalidRow as exc:   # written by hand; the daemon rewrites its own at start
            raise InvalidRow(f"templates row {name!r}: {exc}") from None

    def load_templates(self) -> dict[str, list[dict[str, Any]]]:
        """Every stored template; one whose steps cannot be read lists with none."""
        return {str(_rows.lenient_text(r[0])): _rows.lenient_steps(r[1]) for r in
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
        # an update keeps the paused flag, unless a person left something else than 0 or 1
        self._write(lambda conn: conn.execute(
            f"INSERT INTO queues (name, {cols}, paused, updated_at) VALUES (?, {marks}, ?, ?) "
            f"ON CONFLICT(name) DO UPDATE SET {updates}, updated_at=excluded.updated_at, "
            "paused=CASE WHEN typeof(paused)='integer' AND paused IN (0, 1) THEN paused "
            "ELSE excluded.paused END",
            (spec.name, *values, int(spec.paused), _now_iso())))

    def delete_queue(self, name: str) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM queues WHERE name=?", (name,)).rowcount == 0:
                raise QueueNotFound(f"no queue {name!r}")

        self._write(tx)

    def load_queue(self, name: str) -> QueueSpec:
        """Raises QueueNotFound, or InvalidRow for a row holding values ewfd cannot use."""
        rows = self._read("SELECT * FROM queues WHERE name=?", (name,))
        if not rows:
            raise QueueNotFound(f"no queue {name!r}")
        try:
            return _rows.queue_spec(rows[0])
        except InvalidRow as exc:
            raise InvalidRow(f"queues row {name!r}: {exc}") from None

    def load_queues(self) -> list[QueueSpec]:
        """The queues whose rows can be used (see :meth:`queue_rows` for the others)."""
        return self.queue_rows()[0]

    def queue_rows(self) -> tuple[list[QueueSpec], dict[str, str]]:
        """Every queues row: the usable ones, and what is wrong with each of the others
        (by name), which the supervisor logs and skips and ``ctl queues`` shows."""
        specs, invalid = [], {}
        for r in self._read("SELECT * FROM queues ORDER BY name"):
            try:
                specs.append(_rows.queue_spec(r))
            except InvalidRow as exc:
                invalid[str(_rows.lenient_text(r["name"]))] = str(exc)
        return specs, invalid

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
            for r in self._fetch(conn, f"SELECT id, uuid, queue FROM jobs WHERE "
                                 f"{self._NEW_ON_DRAINING}"):
                error = closing_error(str(_rows.lenient_text(r["queue"])))
                conn.execute("UPDATE jobs SET status='failed', error=?, token=token+1, "
                             "updated_at=? WHERE id=?", (error, _now_iso(), r["id"]))
                out.append((str(_rows.lenient_text(r["uuid"])), error))
            return out

        return self._write(tx)

    def close_drained(self, name: str) -> bool:
        return bool(self._write(lambda conn: conn.execute(
            "DELETE FROM queues WHERE name=? AND drain_after IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM jobs WHERE queue=? AND status IN ('pending','running'))",
            (name, name)).rowcount))

    def queue_stats(self) -> list[dict[str, Any]]:
        """Per queue; a queues row that cannot be used shows with ``invalid`` (why), and
        workflows with no queue under ``queue: None``, last."""
        stats: dict[str | None, dict[str, Any]] = {}
        specs, invalid = self.queue_rows()
        for q in specs:
            stats[q.name] = {"queue": q.name, "workers": q.workers, "paused": q.paused}
        for name, problem in invalid.items():
            stats[name] = {"queue": name, "workers": 0, "paused": False, "invalid": problem}
        for r in self._read("SELECT queue, status, count(*) FROM jobs GROUP BY queue, status"):
            queue = _rows.lenient_text(r[0])
            entry = stats.setdefault(queue, {"queue": queue, "workers": 0, "paused": False})
            status = str(_rows.lenient_status(r[1])[0])
            entry[status] = entry.get(status, 0) + r[2]
        now = utcnow()
        for r in self._read("SELECT queue, min(created_at) FROM jobs WHERE status='pending' "
                            "GROUP BY queue"):
            entry = stats[_rows.lenient_text(r[0])]
            oldest = _rows.lenient_time(r[1], None)
            age = None if oldest is None else (now - oldest).total_seconds()
            if age is not None:
                entry["oldest_pending_age_s"] = max(age, entry.get("oldest_pending_age_s") or 0.0)
        out = []
        for key in sorted(stats, key=lambda n: (n is None, n or "")):
            entry = stats[key]
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
        when = _rows.lenient_time(last[0][0], None)
        return int(open_), (when.timestamp() if when else None)

    # -- wake-up and housekeeping -------------------------------------------------------
    def due_in(self, queue: str) -> float | None:
        # The claim's own conditions: a paused queue, or a not_before that is not a number
        # (written by hand), has nothing due, or its workers would wake for it in a loop.
        # An idle worker writes nothing until a row is due: this read is where it notices
        # that its database file left the path (one stat).
        self.check_file()
        now = self.clock.now()
        rows = self._read(f"SELECT min(CASE WHEN {self._DUE} THEN :t ELSE not_before END) "
                          "FROM jobs WHERE status='pending' AND queue=:queue "
                          "AND typeof(not_before) IN ('integer','real') AND NOT EXISTS "
                          "(SELECT 1 FROM queues WHERE name=:queue AND "
                          "(paused OR jobs.id > drain_after))",
                          {"t": now, "queue": queue})
        return None if rows[0][0] is None else float(rows[0][0]) - now

    @property
    def wakes_on_change(self) -> bool:
        """True when :meth:`wait_for_change` blocks on inotify rather than polling. Asking
        also arms this thread's watch: ask before the first claim, so no write is missed."""
        return self._watch().blocking

    def _seen(self) -> Seen:
        seen: Seen | None = getattr(self._local, "seen", None)
        if seen is None:
            seen = self._local.seen = Seen(self._data_version(), self._commits)
        return seen

    def _watch(self) -> ChangeWaiter:
        seen = self._seen()
        if seen.waiter is None:
            seen.waiter = ChangeWaiter(self.path)
            with self._lock:
                self._waiters.add(seen.waiter)
        return seen.waiter

    def _committed(self) -> None:
        """Count a commit made through this store (the lock is held): other threads waiting
        on this store must wake for it; the thread that made it has seen it."""
        seen: Seen | None = getattr(self._local, "seen", None)
        self._commits += 1
        if seen is not None and seen.commits == self._commits - 1:
            seen.commits = self._commits

    def _data_version(self) -> int:
        return int(self._read("PRAGMA data_version")[0][0])

    def changed(self) -> bool:
        """True when another connection, or another thread through this store, committed
        since this thread last looked (here or in :meth:`wait_for_change`)."""
        seen = self._seen()
        version, commits = self._data_version(), self._commits
        if version == seen.version and commits == seen.commits:
            return False
        seen.version, seen.commits = version, commits
        return True

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until no write transaction is in progress (in any process), so that the next
        read sees every commit whose ``-wal`` write already happened. False when one still
        holds the write lock after ``timeout`` (default: the busy timeout).

        It runs a statement that takes the write lock and changes nothing: it writes no WAL
        frame and, as one autocommit statement, never leaves a transaction open. It runs on
        a connection of its own with no busy handler and retries on a short schedule: the
        handler's sleeps grow to 100 ms, and a writer is usually done within a millisecond.
        A read-only store cannot take the lock and returns True at once.
        """
        if self._readonly or self.path == ":memory:":
            return True
        self._check_pid()
        deadline = time.monotonic() + (self._busy_timeout if timeout is None else timeout)
        pause = 0.0002
        with self._settle_lock:
            try:
                if self._settler is None:
                    self._settler = self._connect()
                    self._settler.execute("PRAGMA busy_timeout=0")
                while True:
                    try:
                        self._settler.execute("DELETE FROM queues WHERE 0")
                        return True
                    except sqlite3.OperationalError as exc:
                        if not _is_busy(exc):
                            raise StoreError(f"{self.path}: {exc}") from exc
                        if time.monotonic() >= deadline:
                            return False
                    time.sleep(pause)
                    pause = min(pause * 2, 0.01)
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path}: {exc}") from exc

    def wait_for_change(self, timeout: float) -> None:
        """Return when another connection (or another thread through this store) committed
        since this thread last looked, or after ``timeout``.

        Blocks on inotify where it can. An event comes when a writer writes ``-wal``, which
        is *before* its commit is visible; :meth:`settle` then waits for that writer to
        finish, however long it is delayed, so a commit whose event this thread consumed is
        always seen before the wait goes on. Without inotify, polls every 50 ms.
        """
        waiter = self._watch()
        deadline = time.monotonic() + timeout
        while not self.changed():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if not waiter.blocking:
                time.sleep(min(remaining, 0.05))
            elif waiter.wait(remaining) and not self.settle():
                return   # the lock is held past the busy timeout: let the caller see

    def maintenance(self) -> None:
        self._read("PRAGMA wal_checkpoint(TRUNCATE)")


# A running row without a usable lease (set by hand: every claim writes both) is taken back
# by the expired-lease sweep, as if its lease had expired.
_NO_LEASE = ("typeof(j.lease_expires) NOT IN ('integer','real') OR "
             "typeof(j.lease_owner) <> 'text'")

# Pending rows no worker would ever take: an unknown queue, no queue on a row no engine
# stored (an engine's own rows carry their steps), a not_before that is not a number.
_UNRUNNABLE = ("status='pending' AND ((queue IS NOT NULL AND queue NOT IN (SELECT name FROM "
               "queues)) OR (queue IS NULL AND steps IS NULL) OR "
               "typeof(not_before) NOT IN ('integer','real'))")


def _unrunnable(r: sqlite3.Row) -> str:
    if r["queue"] is None and r["by_sql"]:
        return ("invalid row: queue is NULL: no worker takes a workflow without a queue "
                "(leave the column out for 'default', or name a queue)")
    if isinstance(r["queue"], _BadText):
        return (f"invalid row: queue {_rows.show(r['queue'])}: not valid UTF-8 text (no "
                "queue has that name)")
    if not isinstance(r["not_before"], int | float):
        return (f"invalid row: not_before {_rows.show(r['not_before'])}: expected a number "
                "(epoch seconds)")
    return (f"unknown queue {_rows.lenient_text(r['queue'])!r}: no configured or created "
            "queue has that name")


def _max_crashes(value: Any) -> int:
    """A queue's max_crashes as the interrupt sweep reads it (a bad row: the default)."""
    try:
        return _rows.integer(value, "max_crashes", 1)
    except InvalidRow:
        return DEFAULT_MAX_CRASHES


def _progress(text: Any) -> StepProgress | None:
    """The progress column as read: None when empty or unreadable (never an error)."""
    if not text:
        return None
    try:
        data = json.loads(text)
        message = data.get("message")
        return StepProgress(float(data["fraction"]), None if message is None else str(message),
                            int(data["step_index"]), parse_iso(data["updated_at"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _diagnose(path: str, readonly: bool = False) -> str:
    """A hint for SQLite's bare "unable to open database file"."""
    if os.path.isdir(path):
        return " (the path is a directory, not a database file)"
    if readonly:
        return "" if os.access(path, os.R_OK) else " (no read permission on the database file)"
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return " (no write permission on the database file: this user can only read it)"
    if not os.access(directory, os.W_OK):
        return (f" (the directory {directory} is read-only or not writable: WAL mode needs to "
                "create the -wal and -shm files beside the database)")
    return ""


def _owner_pid(owner: Any) -> int | None:
    try:
        return int(owner.split(":")[1]) if isinstance(owner, str) else None
    except (IndexError, ValueError):
        return None
