"""The database file deleted or replaced under a running daemon (issue 10, D7).

The daemon must notice that the file at the path is not the file it opened,
log an error that says so, never create a new database after start-up, and
stop with a non-zero exit (systemd restarts it) instead of carrying on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess

import pytest
from conftest import Daemon, event

pytestmark = pytest.mark.e2e

STOP_WAIT = 20.0


def remove_database(daemon: Daemon) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{daemon.db}{suffix}")


def exit_code(daemon: Daemon) -> int:
    assert daemon.proc is not None
    try:
        return daemon.proc.wait(STOP_WAIT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the daemon still runs {STOP_WAIT:g}s after its database was "
                             f"lost{daemon._tail()}") from None


@pytest.mark.timeout(60)
def test_deleted_database_and_a_dead_worker_stop_the_daemon_without_a_new_database(
        daemon: Daemon) -> None:
    daemon.start()
    victim = daemon.worker_pids()[0]
    remove_database(daemon)
    os.kill(victim, signal.SIGKILL)
    assert exit_code(daemon) != 0
    lost = daemon.events("database.lost")
    assert lost and lost[0]["level"] == "error", daemon._tail()
    assert "deleted" in lost[0]["error"] and str(daemon.db) in lost[0]["error"]
    assert not daemon.db.exists(), "a new database was created after start-up"
    assert not daemon.events("queue.removed")
    assert not daemon.events("supervisor.stopped", exit_code=0)


@pytest.mark.timeout(60)
def test_deleted_database_alone_is_noticed(daemon: Daemon) -> None:
    daemon.start()
    remove_database(daemon)
    assert exit_code(daemon) != 0
    assert "deleted" in daemon.wait_for_log(event("database.lost"))["error"]
    assert not daemon.db.exists()


@pytest.mark.timeout(60)
def test_main_file_deleted_leaves_no_stale_wal_for_the_next_start(daemon: Daemon) -> None:
    daemon.start()
    uuid = daemon.insert_job("three", {"n": 1})
    daemon.wait_for_status(uuid, "completed")
    os.unlink(daemon.db)     # the -wal and -shm stay: SQLite keeps them for a moved file
    assert exit_code(daemon) != 0
    assert daemon.events("database.journal_set_aside"), daemon._tail()
    daemon.start()            # a fresh, empty database: the old WAL must not be applied to it
    again = daemon.insert_job("three", {"n": 2})
    daemon.wait_for_status(again, "completed")
    assert daemon.stop() == 0
    with contextlib.closing(sqlite3.connect(daemon.db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [r[0] for r in conn.execute("SELECT uuid FROM jobs")] == [again]


@pytest.mark.timeout(60)
def test_database_replaced_by_a_backup_stops_the_daemon_and_leaves_the_backup_whole(
        daemon: Daemon) -> None:
    daemon.start()
    kept = daemon.insert_job("three", {"n": 1})
    daemon.wait_for_status(kept, "completed")
    backup = daemon.dir / "backup.db"
    with contextlib.closing(daemon.connect()) as conn:
        conn.execute("VACUUM INTO ?", (str(backup),))
    gone = daemon.insert_job("blocking", {"n": 2})    # only in the live database
    daemon.wait_started(gone)
    os.replace(backup, daemon.db)
    lost = daemon.wait_for_log(event("database.lost"))
    assert "replaced" in lost["error"] and lost["level"] == "error"
    daemon.release(gone)
    assert exit_code(daemon) != 0
    assert daemon.events("database.journal_set_aside")   # the old file's WAL is not the backup's
    with contextlib.closing(sqlite3.connect(daemon.db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        uuids = {r[0]: r[1] for r in conn.execute("SELECT uuid, status FROM jobs")}
    assert uuids == {kept: "completed"}
    daemon.start()   # what systemd does next: the backup is the database now
    again = daemon.insert_job("three", {"n": 3})
    daemon.wait_for_status(again, "completed")
    assert daemon.stop() == 0
