"""Reading the database without write access, and database paths SQLite would misread
(issue 10, D8).

The operator is a real other user: uid/gid 65534 (``nobody``/``nogroup``) in the
daemon directory's group, with read access only (directory 2750, files 0640, owned by
the daemon's user, root here). This Python lives where that user cannot exec it, so the
reader is a forked child of the test that drops its privileges for good and then runs
``ewfd ctl`` in process (the same entry point the console script calls).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Daemon, wait_until

from ewfd import QueueSpec
from ewfd.cli import main
from ewfd.store.sqlite import SQLiteStore

pytestmark = pytest.mark.e2e

READER = 65534      # nobody / nogroup


def _reader_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "switching users in a forked child is tested on Linux only"
    if os.geteuid() != 0:
        return ("needs root to switch to another uid: the reader must be a real user "
                "without write access, and tests running as that user cannot make one")
    try:
        pwd.getpwuid(READER)
    except KeyError:
        return f"no user with uid {READER} (nobody) on this system"
    return None


needs_reader = pytest.mark.skipif(_reader_reason() is not None, reason=_reader_reason() or "")


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


def start_reader(fn: Callable[[], int]) -> Callable[[], Ran]:
    """Fork a child that becomes uid/gid 65534 with no other groups and runs ``fn``;
    returns the wait for its exit code and output."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: never returns
        code = 99
        try:
            os.close(out_r)
            os.close(err_r)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            sys.stdout = open(1, "w", encoding="utf-8", closefd=False)   # noqa: SIM115
            sys.stderr = open(2, "w", encoding="utf-8", closefd=False)   # noqa: SIM115
            os.setgroups([])
            os.setgid(READER)
            os.setuid(READER)
            code = fn()
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    os.close(out_w)
    os.close(err_w)

    def wait() -> Ran:
        out = _read_all(out_r)
        err = _read_all(err_r)
        _, status = os.waitpid(pid, 0)
        return Ran(os.waitstatus_to_exitcode(status), out, err)
    return wait


def as_reader(fn: Callable[[], int]) -> Ran:
    return start_reader(fn)()


def _read_all(fd: int) -> str:
    with open(fd, "rb") as fh:
        return fh.read().decode("utf-8", "replace")


def ctl_main(*args: str) -> int:
    try:
        main(["ctl", *args], prog_name="ewfd")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def ctl_as_reader(*args: str) -> Ran:
    return as_reader(lambda: ctl_main(*args))


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """The daemon's state directory as systemd makes it: 2750, group = the reader's group
    (the setgid bit gives the database, -wal and -shm that group too)."""
    where = Path(tempfile.mkdtemp(prefix="ewfd-ro-", dir="/tmp"))
    os.chown(where, 0, READER)
    os.chmod(where, 0o2750)
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


@pytest.fixture
def ro_daemon(daemon: Daemon, shared_dir: Path) -> Daemon:
    daemon.db = shared_dir / "ewfd.db"
    daemon.configure()
    return daemon


def read_commands(db: Path, uuid: str) -> dict[str, Ran]:
    return {name: ctl_as_reader(*args, "--db", str(db), "--json") for name, args in (
        ("workflows", ["workflows"]), ("queues", ["queues"]), ("show", ["show", uuid]),
        ("templates", ["templates"]), ("workers", ["workers"]),
        ("prune --dry-run", ["prune", "--older-than", "1d", "--dry-run"]))}


def check_reads(db: Path, uuid: str) -> None:
    ran = read_commands(db, uuid)
    for name, result in ran.items():
        assert result.code == 0 and "Traceback" not in result.err, (name, result)
    assert [(w["uuid"], w["status"]) for w in ran["workflows"].json()] == [(uuid, "completed")]
    queues = {q["queue"]: q for q in ran["queues"].json()}
    assert queues["default"]["completed"] == 1
    assert [h["outcome"] for h in ran["show"].json()["history"]] == ["completed"] * 3
    assert "three" in {t["name"] for t in ran["templates"].json()}


def one_completed(daemon: Daemon) -> str:
    """Start the daemon and run one workflow to its end; its uuid."""
    daemon.start()
    uuid = daemon.insert_job("three", {"n": 1})
    daemon.wait_for_status(uuid, "completed")
    return uuid


@needs_reader
@pytest.mark.timeout(90)
def test_a_reader_in_the_group_reads_everything_after_a_clean_stop(ro_daemon: Daemon) -> None:
    uuid = one_completed(ro_daemon)
    assert ro_daemon.stop() == 0
    db = ro_daemon.db
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
    before = sorted(os.listdir(db.parent))
    check_reads(db, uuid)
    assert sorted(os.listdir(db.parent)) == before, "the reader changed the directory"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@needs_reader
@pytest.mark.timeout(90)
def test_a_reader_sees_the_latest_commits_while_the_daemon_runs(ro_daemon: Daemon) -> None:
    uuid = one_completed(ro_daemon)   # committed to the WAL, maybe not to the file yet
    check_reads(ro_daemon.db, uuid)
    workers = ctl_as_reader("workers", "--db", str(ro_daemon.db), "--json").json()
    assert {w["role"] for w in workers} == {"supervisor", "worker"}
    assert ro_daemon.stop() == 0


def commit_and_die(db: Path) -> None:
    """Commit in a process that then dies without closing: the commit stays in the -wal."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            conn = sqlite3.connect(db, isolation_level=None)
            conn.execute("INSERT INTO queues (name) VALUES ('late')")
            code = 0
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    assert os.path.getsize(f"{db}-wal") > 0


@needs_reader
@pytest.mark.timeout(90)
def test_a_reader_after_the_daemon_was_killed(ro_daemon: Daemon) -> None:
    uuid = one_completed(ro_daemon)
    ro_daemon.remember_descendants()
    os.kill(ro_daemon.pid, signal.SIGKILL)       # -wal and -shm stay, the WAL not folded in
    assert ro_daemon.proc is not None and ro_daemon.proc.wait(10) == -signal.SIGKILL
    wait_until(lambda: not ro_daemon.worker_pids(), 10, "the workers to die")
    commit_and_die(ro_daemon.db)    # one more commit left in the WAL only
    check_reads(ro_daemon.db, uuid)
    assert "late" in {q["queue"] for q in
                      ctl_as_reader("queues", "--db", str(ro_daemon.db), "--json").json()}
    os.unlink(f"{ro_daemon.db}-shm")   # a WAL with content and no -shm: SQLite cannot read it
    result = ctl_as_reader("workflows", "--db", str(ro_daemon.db))
    assert result.code == 1 and len(result.err.splitlines()) == 1, result
    assert "-wal file holds changes" in result.err and "Traceback" not in result.err


@needs_reader
@pytest.mark.timeout(90)
def test_an_action_without_write_access_fails_with_one_line(ro_daemon: Daemon) -> None:
    uuid = one_completed(ro_daemon)
    assert ro_daemon.stop() == 0
    for args in (["cancel", uuid], ["pause", "default"], ["enqueue", "three"]):
        result = ctl_as_reader(*args, "--db", str(ro_daemon.db))
        assert result.code == 1, (args, result)
        assert result.err.startswith("ewfd: ") and len(result.err.splitlines()) == 1, result.err
        assert "Traceback" not in result.err


@needs_reader
@pytest.mark.timeout(60)
def test_an_immutable_read_notices_a_writer_that_came_meanwhile(shared_dir: Path) -> None:
    """Read with the -wal gone (immutable), then a writer commits to a new WAL: the next
    read must see that commit, not the main file as it was."""
    db = shared_dir / "ewfd.db"
    SQLiteStore(db).close()       # 0640, group 65534 (setgid directory); -wal and -shm gone
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()

    def reader() -> int:
        os.close(go_r)
        os.close(done_w)
        reading = SQLiteStore(db, readonly=True, create=False)
        first = len(reading.load_queues())
        os.write(go_w, b"1")           # parent: write now
        os.read(done_r, 1)             # ... written
        second = len(reading.load_queues())
        print(json.dumps([first, second]))
        reading.close()
        return 0

    child = start_reader(reader)
    os.close(go_w)
    os.close(done_r)
    if os.read(go_r, 1) != b"1":
        raise AssertionError(f"the reader failed: {child()}")
    writer = SQLiteStore(db)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("INSERT INTO queues (name) VALUES ('late')")
    os.write(done_w, b"1")
    result = child()
    writer.close()
    assert result.code == 0, result.err
    assert json.loads(result.out) == [0, 1]


# -- paths SQLite would read as URI syntax ------------------------------------------------
ODD = "odd #1 ?x=y %41 dir"


def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ewfd", "ctl", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def decoys(root: Path) -> None:
    """Databases where a misread URI of ``root/ODD/ewfd.db`` would land: cut at '#' or '?',
    or with %41 decoded to 'A'."""
    for where in (root / "odd ", root / "odd #1 ", root / "odd #1 ?x=y A dir" / "ewfd.db"):
        where.parent.mkdir(parents=True, exist_ok=True)
        store = SQLiteStore(where)
        store.save_queue(QueueSpec("decoy"))
        store.close()


@pytest.mark.timeout(120)
def test_ctl_and_run_open_a_database_whose_path_has_hash_question_mark_and_percent(
        daemon: Daemon) -> None:
    decoys(daemon.dir)
    odd = daemon.dir / ODD
    odd.mkdir()
    daemon.db = odd / "ewfd.db"
    daemon.configure()
    daemon.start()
    uuid = daemon.insert_job("three", {"n": 1})
    daemon.wait_for_status(uuid, "completed")
    for args in (["--db", str(daemon.db)], ["--config", str(daemon.config_path)]):
        listed = ctl("workflows", *args, "--json")
        assert listed.returncode == 0, listed.stderr
        assert [w["uuid"] for w in json.loads(listed.stdout)] == [uuid]
        queues = json.loads(ctl("queues", *args, "--json").stdout)
        assert [q["queue"] for q in queues] == ["default"]
        paused = ctl("pause", "default", *args)
        assert paused.returncode == 0, paused.stderr
        assert ctl("resume", "default", *args).returncode == 0
    assert daemon.stop() == 0
    for decoy in (daemon.dir / "odd ", daemon.dir / "odd #1 ",
                  daemon.dir / "odd #1 ?x=y A dir" / "ewfd.db"):
        with contextlib.closing(sqlite3.connect(decoy)) as conn:
            assert conn.execute("SELECT name, paused FROM queues").fetchall() == [("decoy", 0)]
            assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
