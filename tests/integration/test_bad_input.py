"""Garbage into every entry point: each gets a clear error, none corrupts the database.

- config files -> ``ewfd run --config`` exits 2 with one line naming the key;
- ``jobs`` rows (CONTRACT section 5) -> an in-process worker fails them with an error
  naming the problem, the database stays consistent and the next good row completes;
- ``ewfd ctl`` arguments (skipped while ``ewfd ctl`` does not exist);
- a database file that is not SQLite, one from a newer schema, one in a read-only
  directory -> a clear error, and the file is left as it was.

Known bugs are strict xfails naming the bug: when one is fixed its test passes, the
suite fails on the XPASS, and the marker goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from ewfd import Engine, SQLiteStore, Step, WorkflowTemplate
from ewfd.errors import SchemaTooNew, StoreError
from ewfd.model import QueueSpec
from ewfd.worker import Worker

MAX_STATE = 4096
APP = "ewfd.examples.demo:engine"


def run_ewfd(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("EWFD_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    return subprocess.run([sys.executable, "-m", "ewfd", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, start_new_session=True)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- config files ---------------------------------------------------------------------------------
GOOD = f'[ewfd]\napp = "{APP}"\ndatabase = "ewfd.db"\n'
Q = "[queues.default]\n"

CONFIGS: dict[str, tuple[str, list[str]]] = {
    # wrong types
    "workers string": (GOOD + Q + 'workers = "two"\n', ["queues.default.workers", "integer"]),
    "workers float": (GOOD + Q + "workers = 2.5\n", ["queues.default.workers", "integer"]),
    "workers bool": (GOOD + Q + "workers = true\n", ["queues.default.workers", "integer"]),
    "lease array": (GOOD + Q + "lease = [1, 2]\n", ["queues.default.lease", "duration"]),
    "lease bool": (GOOD + Q + "lease = false\n", ["queues.default.lease", "duration"]),
    "poll table": (GOOD + Q + "poll_interval = {a = 1}\n", ["poll_interval", "duration"]),
    "database int": (f'[ewfd]\napp = "{APP}"\ndatabase = 42\n', ["ewfd.database", "string"]),
    "database memory": (f'[ewfd]\napp = "{APP}"\ndatabase = ":memory:"\n',
                        ["ewfd.database", ":memory:"]),
    "app int": ("[ewfd]\napp = 7\n", ["ewfd.app"]),
    "app shape": ('[ewfd]\napp = "not an app spec"\n', ["ewfd.app", "module:attribute"]),
    "app not engine": ('[ewfd]\napp = "os:path"\n', ["ewfd.app", "Engine"]),
    "app no attribute": ('[ewfd]\napp = "json:no_such_engine"\n', ["ewfd.app", "no_such_engine"]),
    "log level": (GOOD + 'log_level = "chatty"\n', ["ewfd.log_level", "chatty"]),
    "synchronous": (GOOD + 'synchronous = "off"\n', ["ewfd.synchronous", "off"]),
    "max_state_size unit": (GOOD + 'max_state_size = "1TB"\n', ["ewfd.max_state_size"]),
    "max_memory string": (GOOD + Q + 'max_memory = "lots"\n', ["queues.default.max_memory"]),
    "queues not table": ("queues = 3\n" + GOOD, ["queues", "table"]),
    "queue not table": (GOOD + '[queues]\ndefault = "x"\n', ["queues.default", "table"]),
    "queue name": (GOOD + '[queues."no spaces allowed"]\nworkers = 1\n', ["queue name"]),
    # unknown keys
    "unknown ewfd key": (GOOD + 'databse = "x.db"\n', ["ewfd.databse", "unknown"]),
    "unknown queue key": (GOOD + Q + "wrokers = 2\n", ["queues.default.wrokers", "unknown"]),
    "unknown table": (GOOD + "[server]\nport = 1\n", ["server", "unknown"]),
    "queue key in ewfd": (GOOD + "workers = 2\n", ["ewfd.workers"]),
    "missing app": ('[ewfd]\ndatabase = "x.db"\n', ["ewfd.app", "missing"]),
    "empty file": ("", ["ewfd.app", "missing"]),
    # negative and zero counts
    "workers negative": (GOOD + Q + "workers = -1\n", ["queues.default.workers", ">= 1"]),
    "workers zero": (GOOD + Q + "workers = 0\n", ["queues.default.workers"]),
    "workers huge": (GOOD + Q + "workers = 99999999999999999999999\n",
                     ["queues.default.workers", "64"]),
    "max_crashes zero": (GOOD + Q + "max_crashes = 0\n", ["queues.default.max_crashes"]),
    "max_tasks negative": (GOOD + Q + "max_tasks_per_worker = -3\n",
                           ["queues.default.max_tasks_per_worker"]),
    "max_memory negative": (GOOD + Q + "max_memory = -1\n", ["queues.default.max_memory"]),
    "max_state_size zero": (GOOD + 'max_state_size = "0"\n', ["ewfd.max_state_size"]),
    "negative duration": (GOOD + 'shutdown_timeout = "-5s"\n', ["ewfd.shutdown_timeout", ">= 0"]),
    "lease below 1s": (GOOD + Q + 'lease = "10ms"\n', ["queues.default.lease"]),
    "poll zero": (GOOD + Q + 'poll_interval = "0ms"\n', ["queues.default.poll_interval"]),
    # huge, infinite and unit-less durations
    "huge lease": (GOOD + Q + 'lease = "100000d"\n', ["queues.default.lease", "too large"]),
    "huge seconds": (GOOD + "shutdown_timeout = 1e300\n", ["ewfd.shutdown_timeout", "too large"]),
    "infinite": (GOOD + "timeout_grace = inf\n", ["ewfd.timeout_grace", "finite"]),
    "nan": (GOOD + "timeout_grace = nan\n", ["ewfd.timeout_grace", "finite"]),
    "huge poll": (GOOD + Q + 'poll_interval = "2h"\n', ["queues.default.poll_interval", "1h"]),
    "no unit": (GOOD + 'shutdown_timeout = "30"\n', ["ewfd.shutdown_timeout", "unit"]),
    "bad unit": (GOOD + 'shutdown_timeout = "30 fortnights"\n', ["ewfd.shutdown_timeout"]),
    # not TOML at all
    "invalid toml": (GOOD + "workers = = 2\n", ["invalid TOML"]),
    "duplicate key": (GOOD + 'app = "x:y"\n', ["invalid TOML"]),
    "binary": ("\x00\x01\x02\xff", ["TOML"]),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_bad_config_exits_2_with_one_line(tmp_path: Path, case: str) -> None:
    text, words = CONFIGS[case]
    path = tmp_path / "ewfd.toml"
    if case == "binary":
        path.write_bytes(b"[ewfd]\n\xff\xfe\x00garbage")
    else:
        path.write_text(text)
    result = run_ewfd("run", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2, result
    line = one_line(result.stderr)
    assert line.startswith("ewfd: config: "), line
    assert str(path) in line, line
    for word in words:
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}"
    assert not (tmp_path / "ewfd.db").exists(), "the daemon started anyway"


@pytest.mark.timeout(30)
def test_config_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    result = run_ewfd("run", "--config", str(tmp_path / "conf.d"), cwd=tmp_path)
    assert result.returncode == 2
    assert "directory" in one_line(result.stderr)


@pytest.mark.timeout(30)
def test_log_file_in_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "ewfd.toml"
    path.write_text(GOOD + 'log_file = "/nonexistent-ewfd-dir/ewfd.log"\n')
    result = run_ewfd("run", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "ewfd.log_file" in line and "/nonexistent-ewfd-dir/ewfd.log" in line


@pytest.mark.timeout(30)
def test_database_in_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "ewfd.toml"
    path.write_text(f'[ewfd]\napp = "{APP}"\ndatabase = "/nonexistent-ewfd-dir/x.db"\n')
    result = run_ewfd("run", "--config", str(path), cwd=tmp_path)
    assert result.returncode != 0
    line = one_line(result.stderr)
    assert "/nonexistent-ewfd-dir/x.db" in line and "No such file or directory" in line


# -- jobs rows ----------------------------------------------------------------------------------
def make_engine(path: Path) -> tuple[Engine, SQLiteStore]:
    store = SQLiteStore(path)
    engine = Engine(store=store, max_state_size=MAX_STATE)
    engine.register("one", lambda ctx, state: state.__setitem__("one", True))
    engine.register("two", lambda ctx, state: state.__setitem__("two", True))
    engine.register_template("good", WorkflowTemplate(steps=[Step("one"), Step("two")]))
    store.save_queue(QueueSpec("default"))
    return engine, store


@pytest.fixture
def jobs_db(tmp_path: Path) -> Iterator[tuple[Engine, SQLiteStore, Path]]:
    engine, store = make_engine(tmp_path / "jobs.db")
    try:
        yield engine, store, tmp_path / "jobs.db"
    finally:
        engine.close()


def insert(db: Path, bypass_checks: bool = False, /, **columns: str) -> int:
    """Insert a jobs row; values are SQL literals, as any program with sqlite3 might write.
    ``bypass_checks``: with ``PRAGMA ignore_check_constraints`` (as an older schema allowed)."""
    values = {"queue": "'default'", "workflow": "'good'", "state": "'{}'", **columns}
    conn = sqlite3.connect(db, isolation_level=None)
    if bypass_checks:
        conn.execute("PRAGMA ignore_check_constraints = ON")
    try:
        cur = conn.execute(f"INSERT INTO jobs ({', '.join(values)}) "
                           f"VALUES ({', '.join(values.values())})")
        return int(cur.lastrowid or 0)
    finally:
        conn.close()


def row(db: Path, rowid: int) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    conn.text_factory = lambda b: b.decode("utf-8", "replace")
    try:
        found = conn.execute("SELECT * FROM jobs WHERE id = ?", (rowid,)).fetchone()
        assert found is not None
        return dict(found)
    finally:
        conn.close()


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def drain(engine: Engine, store: SQLiteStore) -> list[Any]:
    return Worker(engine, store, QueueSpec("default")).drain(limit=200)


def assert_good_row_completes(engine: Engine, store: SQLiteStore, db: Path) -> None:
    rowid = insert(db, state="'{\"ok\": 1}'")
    drain(engine, store)
    after = row(db, rowid)
    assert after["status"] == "completed", after
    assert json.loads(after["state"]) == {"ok": 1, "one": True, "two": True}


HUGE = "'{\"x\": \"" + "y" * (MAX_STATE + 100) + "\"}'"
DEEP = "'{\"a\": " + "[" * 1800 + "]" * 1800 + "}'"      # 3.6 KB, under max_state_size
BAD_UTF8 = "CAST(X'7b2261223a2280ff227d' AS TEXT)"          # {"a":"\x80\xff"}

#: Bad rows: (columns as SQL literals, regex the error must match). Each must either be
#: refused at INSERT with an error naming the column, or end ``failed`` naming the problem.
BAD_ROWS: dict[str, tuple[dict[str, str], str]] = {
    "unknown workflow": ({"workflow": "'no-such-workflow'"}, "unknown workflow 'no-such-workflow'"),
    "numeric workflow name": ({"workflow": "42"}, "unknown workflow"),
    "state array": ({"state": "'[1, 2]'"}, "JSON object"),
    "state string": ({"state": "'\"text\"'"}, "JSON object"),
    "state null": ({"state": "'null'"}, "JSON object"),
    "state invalid json": ({"state": "'{\"a\": '"}, "not valid JSON"),
    "state not json at all": ({"state": "'hello'"}, "not valid JSON"),
    "state huge": ({"state": HUGE}, "limit"),
    "state integer type": ({"state": "42"}, "JSON object|state"),
    "state real type": ({"state": "4.5"}, "JSON object|state"),
    "state blob": ({"state": "X'7b7d'"}, "state"),
    "state invalid utf-8": ({"state": BAD_UTF8}, "state|utf"),
    "state nested too deep": ({"state": DEEP}, "state|deep|nest"),
    "current_step negative": ({"current_step": "-1"}, "current_step"),
    "current_step past the end": ({"current_step": "7"}, "current_step"),
    "current_step text": ({"current_step": "'x'"}, "current_step"),
    "current_step real": ({"current_step": "1.5"}, "current_step"),
    "created_at not a timestamp": ({"created_at": "'yesterday'"}, "created_at"),
    "created_at number": ({"created_at": "12345"}, "created_at"),
}

def settle(engine: Engine, store: SQLiteStore, db: Path, columns: dict[str, str],
           expect: str) -> int | None:
    """Insert a bad row and run the queue. Returns the rowid, or None when the schema
    refused the row (then the error must name the problem: that is a clear error too)."""
    try:
        rowid = insert(db, **columns)
    except sqlite3.IntegrityError as exc:
        assert re.search(expect, str(exc), re.I), f"refused at INSERT, unclearly: {exc}"
        return None
    with structlog.testing.capture_logs() as logs:
        drain(engine, store)
    after = row(db, rowid)
    assert after["status"] == "failed", after
    assert re.search(expect, after["error"] or "", re.I), after["error"]
    assert any(e["event"] == "job.rejected" for e in logs), logs
    return rowid


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_jobs_row_fails_with_a_clear_error(
        jobs_db: tuple[Engine, SQLiteStore, Path], case: str) -> None:
    engine, store, db = jobs_db
    columns, expect = BAD_ROWS[case]
    settle(engine, store, db, columns, expect)
    assert integrity(db) == "ok"
    assert_good_row_completes(engine, store, db)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_that_bypassed_the_checks_fails_cleanly(
        jobs_db: tuple[Engine, SQLiteStore, Path], case: str) -> None:
    """Defence in depth: a row the CHECK constraints would refuse can still be there (a
    database made before they existed, a writer with ``PRAGMA ignore_check_constraints``).
    A worker must fail it naming the problem, not crash on it or wedge the queue."""
    engine, store, db = jobs_db
    columns, expect = BAD_ROWS[case]
    bad = insert(db, True, **columns)   # bypassing the CHECKs
    behind = insert(db, state="'{}'")      # claimed after the bad row: must not be blocked
    with structlog.testing.capture_logs() as logs, contextlib.suppress(Exception):
        drain(engine, store)
    assert row(db, behind)["status"] == "completed", "the bad row wedged the queue"
    after = row(db, bad)
    assert after["status"] == "failed", after
    assert re.search(expect, after["error"] or "", re.I), after["error"]
    assert any(e["event"] == "job.rejected" for e in logs), "no job.rejected logged"
    conn = sqlite3.connect(db)   # integrity_check also reports the rows that broke a CHECK
    problems = [r[0] for r in conn.execute("PRAGMA integrity_check")
                if r[0] != "ok" and not r[0].startswith("CHECK constraint failed")]
    conn.close()
    assert not problems
    assert_good_row_completes(engine, store, db)


@pytest.mark.timeout(30)
def test_rows_in_an_unknown_queue_fail(jobs_db: tuple[Engine, SQLiteStore, Path]) -> None:
    """The supervisor's periodic sweep (``reject_unknown_queues``) fails them."""
    engine, store, db = jobs_db
    rowid = insert(db, queue="'no-such-queue'")
    rejected = store.reject_unknown_queues()
    assert [uuid for uuid, _ in rejected] == [row(db, rowid)["uuid"]]
    after = row(db, rowid)
    assert after["status"] == "failed"
    assert "unknown queue 'no-such-queue'" in after["error"]
    assert integrity(db) == "ok"
    assert_good_row_completes(engine, store, db)


@pytest.mark.parametrize("columns, word", [
    ({"status": "'bogus'"}, "status"),
    ({"state": "NULL"}, "state"),
    ({"workflow": "NULL"}, "workflow"),
    ({"display_name": "NULL"}, "display_name"),
])
def test_rows_the_schema_refuses(jobs_db: tuple[Engine, SQLiteStore, Path],
                                 columns: dict[str, str], word: str) -> None:
    """Refused at INSERT: the writer gets a clear error, and nothing is stored."""
    engine, store, db = jobs_db
    with pytest.raises(sqlite3.IntegrityError, match=word):
        insert(db, **columns)
    assert integrity(db) == "ok"
    assert_good_row_completes(engine, store, db)


def test_many_bad_rows_then_good_ones(jobs_db: tuple[Engine, SQLiteStore, Path]) -> None:
    """A batch of every bad row kind that gets in, interleaved with good rows: all settle."""
    engine, store, db = jobs_db
    good, bad = [], []
    for columns, _ in BAD_ROWS.values():
        with contextlib.suppress(sqlite3.IntegrityError):
            bad.append(insert(db, **columns))
        good.append(insert(db, state="'{}'"))
    drain(engine, store)
    assert bad, "every bad row was refused at INSERT"
    assert all(row(db, r)["status"] == "failed" for r in bad)
    assert all(row(db, r)["status"] == "completed" for r in good)
    assert integrity(db) == "ok"


# -- database files -----------------------------------------------------------------------------
def daemon_config(tmp_path: Path, database: Path) -> Path:
    path = tmp_path / "ewfd.toml"
    path.write_text(f'[ewfd]\napp = "{APP}"\ndatabase = "{database}"\nlog_file = "ewfd.log"\n')
    return path


@pytest.mark.timeout(30)
@pytest.mark.parametrize("content", [
    b"hello, this is not a database" * 10,
    os.urandom(8192),
    b"SQLite format 3\x00" + b"\xff" * 4000,        # the right magic, a garbage header
])
def test_a_file_that_is_not_sqlite(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "ewfd.db"
    db.write_bytes(content)
    with pytest.raises(StoreError, match=r"not a database|malformed|corrupt"):
        SQLiteStore(db)
    result = run_ewfd("run", "--config", str(daemon_config(tmp_path, db)), cwd=tmp_path)
    assert result.returncode != 0
    line = one_line(result.stderr)
    assert str(db) in line and ("not a database" in line or "malformed" in line), line
    assert db.read_bytes() == content, "the file was changed"
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0


def newer_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE future (x)")
    conn.execute("PRAGMA user_version = 999")
    conn.commit()
    conn.close()


@pytest.mark.timeout(30)
def test_a_database_from_a_newer_schema(tmp_path: Path) -> None:
    db = tmp_path / "ewfd.db"
    newer_db(db)
    before = digest(db)
    with pytest.raises(SchemaTooNew, match=r"999.*newer.*upgrade"):
        SQLiteStore(db)
    result = run_ewfd("run", "--config", str(daemon_config(tmp_path, db)), cwd=tmp_path)
    assert result.returncode != 0
    line = one_line(result.stderr)
    assert "999" in line and "newer" in line, line
    assert digest(db) == before, "a database from a newer ewfd was modified"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 999
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["future"]
    conn.close()


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory holding an ewfd database, where nothing can be written.

    As root, permission bits stop nothing: a tmpfs remounted read-only is used, or the
    test is skipped where mounting is not allowed.
    """
    where = tmp_path / "ro"
    where.mkdir()
    if os.geteuid() != 0:
        SQLiteStore(where / "ewfd.db").close()
        where.chmod(0o555)
        try:
            yield where
        finally:
            where.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "ewfd-test", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"running as root and cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        SQLiteStore(where / "ewfd.db").close()
        remount = subprocess.run(["mount", "-o", "remount,ro", str(where)], capture_output=True,
                                 text=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount the tmpfs read-only: {remount.stderr.strip()}")
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.mark.timeout(30)
def test_a_new_database_in_a_read_only_directory(readonly_dir: Path, tmp_path: Path) -> None:
    db = readonly_dir / "new.db"
    with pytest.raises(StoreError, match=r"cannot create database .*(Read-only|Permission)"):
        SQLiteStore(db)
    result = run_ewfd("run", "--config", str(daemon_config(tmp_path, db)), cwd=tmp_path)
    assert result.returncode != 0
    line = one_line(result.stderr)
    assert str(db) in line and re.search("read-only|permission", line.replace(str(db), ""),
                                         re.I), line


@pytest.mark.timeout(30)
def test_an_existing_database_in_a_read_only_directory(readonly_dir: Path,
                                                        tmp_path: Path) -> None:
    db = readonly_dir / "ewfd.db"
    before = digest(db)
    with pytest.raises(StoreError) as caught:
        SQLiteStore(db)
    assert digest(db) == before
    result = run_ewfd("run", "--config", str(daemon_config(tmp_path, db)), cwd=tmp_path)
    assert result.returncode != 0
    line = one_line(result.stderr)
    assert str(db) in line
    for message in (str(caught.value), line):
        assert re.search("read-only|permission|directory", message.replace(str(db), ""),
                         re.I), message


@pytest.mark.timeout(30)
def test_a_database_path_that_is_a_directory(tmp_path: Path) -> None:
    db = tmp_path / "a-directory"
    db.mkdir()
    result = run_ewfd("run", "--config", str(daemon_config(tmp_path, db)), cwd=tmp_path)
    assert result.returncode != 0
    line = one_line(result.stderr)
    assert str(db) in line
    assert "directory" in line.replace(str(db), ""), line


# -- ewfd ctl ---------------------------------------------------------------------------------
def ctl_available() -> bool:
    try:
        return run_ewfd("ctl", "--help", cwd=Path.cwd(), timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def ctl() -> None:
    if not ctl_available():
        pytest.skip("ewfd ctl does not exist yet (ewfd ctl --help fails)")


@pytest.fixture
def ctl_db(tmp_path: Path, ctl: None) -> Path:
    engine, _ = make_engine(tmp_path / "ctl.db")
    engine.close()
    insert(tmp_path / "ctl.db", state="'{\"n\": 1}'")
    return tmp_path / "ctl.db"


CTL_BAD: dict[str, tuple[list[str], int]] = {
    "unknown subcommand": (["frobnicate"], 2),
    "show without uuid": (["show"], 2),
    "show unknown uuid": (["show", "00000000-0000-4000-8000-000000000000"], 1),
    "show garbage uuid": (["show", "'; DROP TABLE jobs; --"], 1),
    "retry unknown uuid": (["retry", "00000000-0000-4000-8000-000000000000"], 1),
    "cancel unknown uuid": (["cancel", "00000000-0000-4000-8000-000000000000"], 1),
    "workflows negative limit": (["workflows", "--limit", "-5"], 2),
    "workflows text limit": (["workflows", "--limit", "many"], 2),
    "workflows bogus status": (["workflows", "--status", "bogus"], 2),
    "enqueue array state": (["enqueue", "good", "--state", "[1, 2]"], 2),
    "enqueue invalid json": (["enqueue", "good", "--state", "{not json"], 2),
    "enqueue bad meta": (["enqueue", "good", "--meta", "novalue"], 2),
    "enqueue unknown workflow": (["enqueue", "no-such-workflow"], 1),
    "pause unknown queue": (["pause", "no-such-queue"], 1),
    "prune bad duration": (["prune", "--older-than", "7 fortnights"], 2),
    "prune negative duration": (["prune", "--older-than", "-1d"], 2),
    "prune running": (["prune", "--older-than", "1d", "--status", "running"], 2),
    "create-queue bad name": (["create-queue", "bad name!"], 2),
    "create-queue negative workers": (["create-queue", "q2", "--workers", "-1"], 2),
    "create-queue bad poll": (["create-queue", "q2", "--poll-interval", "soon"], 2),
    "close-queue unknown": (["close-queue", "no-such-queue"], 1),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", sorted(CTL_BAD))
def test_bad_ctl_arguments(ctl_db: Path, case: str) -> None:
    args, code = CTL_BAD[case]
    before = sqlite3.connect(ctl_db).execute("SELECT count(*) FROM jobs").fetchone()[0]
    result = run_ewfd("ctl", args[0], "--db", str(ctl_db), *args[1:], cwd=ctl_db.parent)
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip(), "no error message"
    assert integrity(ctl_db) == "ok"
    after = sqlite3.connect(ctl_db).execute("SELECT count(*) FROM jobs").fetchone()[0]
    assert after == before


@pytest.mark.timeout(30)
@pytest.mark.parametrize("content", [b"not a database at all" * 10, None])
def test_ctl_on_a_bad_database(tmp_path: Path, ctl: None, content: bytes | None) -> None:
    db = tmp_path / "x.db"
    if content is None:
        newer_db(db)
    else:
        db.write_bytes(content)
    result = run_ewfd("ctl", "workflows", "--db", str(db), cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert str(db) in result.stderr



@pytest.mark.parametrize("columns", [
    pytest.param({"created_at": "'yesterday'"}, id="created_at text"),
    pytest.param({"current_step": "'x'"}, id="current_step text"),
    pytest.param({"state": BAD_UTF8}, id="state not utf-8"),
    pytest.param({"state": "X'7b7d'"}, id="state blob"),
])
@pytest.mark.timeout(30)
def test_ctl_lists_workflows_next_to_a_garbage_row(tmp_path: Path, ctl: None,
                                                   columns: dict[str, str]) -> None:
    """Rows the CHECKs would refuse today can be in a database made before them."""
    engine, _ = make_engine(tmp_path / "ctl.db")
    engine.close()
    db = tmp_path / "ctl.db"
    good = row(db, insert(db))["uuid"]
    bad = row(db, insert(db, True, **columns))["uuid"]   # bypassing the CHECKs
    for args in (["workflows"], ["workflows", "--json"], ["show", bad]):
        result = run_ewfd("ctl", args[0], "--db", str(db), *args[1:], cwd=tmp_path)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == 0, result
        if args[0] == "workflows":
            assert good in result.stdout and bad in result.stdout
