"""The wake-up cannot miss a commit that becomes visible well after its ``-wal`` write.

A WAL commit writes its frames to ``-wal`` (the inotify event), syncs them
(``synchronous=FULL``), and only then publishes the commit in the shared-memory
wal-index, which inotify does not see. A writer delayed in between (descheduled
on a loaded machine, or a slow ``fsync``) used to outlast the listener's fixed
re-read window after the event: the commit was then seen only by the fallback
poll. Here the writer's ``fsync`` is made slow on purpose (a tiny ``LD_PRELOAD``
shim, built with the system C compiler), so the race happens every time: at the
listener (``SQLiteStore.wait_for_change`` and ``settle``) and in the supervisor,
which must see a queue created by such a writer at once.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import Daemon, event

from ewfd.store.sqlite import SQLiteStore

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not sys.platform.startswith("linux"),
                                                  reason="inotify and LD_PRELOAD are Linux")]

STALL = 0.5           # seconds each fsync of the writer takes
WAIT = 20.0           # the waiter's timeout: returning near it means the wake-up was missed
BOUND = 0.4           # seconds from a commit to the supervisor acting on it (fallback: 1 s)

SHIM = r"""
#include <unistd.h>
int fsync(int fd) { (void)fd; usleep(%(us)d); return 0; }
int fdatasync(int fd) { (void)fd; usleep(%(us)d); return 0; }
"""

WRITER = r"""
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("PRAGMA synchronous=FULL")
conn.execute(sys.argv[2])
print("committed", flush=True)
sys.stdin.read()   # stay connected (a closing connection may checkpoint: another event)
conn.close()
"""


@pytest.fixture(scope="module")
def slow_sync(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler for the slow-fsync shim")
    where = tmp_path_factory.mktemp("shim")
    (where / "slowsync.c").write_text(SHIM % {"us": int(STALL * 1e6)})
    lib = where / "slowsync.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(where / "slowsync.c")],
                   check=True, capture_output=True, timeout=60)
    return lib


def slow_write(db: Path, sql: str, lib: Path) -> subprocess.Popen[bytes]:
    """Run ``sql`` in another process whose every fsync stalls for STALL seconds."""
    env = dict(os.environ, LD_PRELOAD=str(lib))
    return subprocess.Popen([sys.executable, "-c", WRITER, str(db), sql], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def finish(writer: subprocess.Popen[bytes]) -> None:
    assert writer.stdin is not None
    writer.stdin.close()
    assert writer.wait(30) == 0


@pytest.mark.timeout(60)
def test_wait_for_change_sees_a_commit_published_long_after_its_wal_write(
        tmp_path: Path, slow_sync: Path) -> None:
    db = tmp_path / "ewfd.db"
    store = SQLiteStore(db)
    try:
        store.wait_for_change(0)
        writer = slow_write(db, "INSERT INTO jobs (queue, workflow) VALUES ('q', 'w')", slow_sync)
        try:
            t0 = time.monotonic()
            store.wait_for_change(WAIT)
            elapsed = time.monotonic() - t0
            visible = len(store.list_workflows())
        finally:
            finish(writer)
        assert visible == 1 and elapsed < WAIT / 4, f"woke after {elapsed:.2f}s"
    finally:
        store.close()


@pytest.mark.timeout(60)
def test_settle_waits_for_a_commit_in_flight(tmp_path: Path, slow_sync: Path) -> None:
    """What the supervisor does after an inotify event: settle, then ask what changed."""
    db = tmp_path / "ewfd.db"
    store = SQLiteStore(db)
    try:
        assert not store.changed()
        seen = threading.Event()
        wal = Path(f"{db}-wal")
        size = wal.stat().st_size if wal.exists() else 0
        writer = slow_write(db, "INSERT INTO queues (name) VALUES ('late')", slow_sync)
        try:
            deadline = time.monotonic() + 20
            while not seen.is_set():      # the -wal write: what the inotify event reports
                if wal.exists() and wal.stat().st_size > size:
                    seen.set()
                assert time.monotonic() < deadline, "the writer never wrote the -wal file"
                time.sleep(0.001)
            assert store.settle()
            assert store.changed()
            assert [q.name for q in store.load_queues()] == ["late"]
        finally:
            finish(writer)
    finally:
        store.close()


@pytest.mark.timeout(120)
def test_supervisor_sees_a_queue_created_by_a_slow_writer_at_once(
        daemon: Daemon, slow_sync: Path) -> None:
    """The supervisor's own wake-up (queues created by SQL, ctl or the API). Its fallback is
    a 1 s re-read, so each try has about even odds of passing by luck: all must."""
    daemon.configure(queues={"default": {"workers": 1, "poll_interval": "5s"}})
    daemon.start()
    for i in range(6):
        name = f"late{i}"
        writer = slow_write(daemon.db, f"INSERT INTO queues (name, poll_interval) VALUES "
                            f"('{name}', 5)", slow_sync)
        try:
            assert writer.stdout is not None
            assert writer.stdout.readline() == b"committed\n"
            t0 = time.monotonic()
            daemon.wait_for_log(event("queue.added", queue=name))
            elapsed = time.monotonic() - t0
        finally:
            finish(writer)
        assert elapsed < BOUND, f"queue {name} seen {elapsed:.2f}s after its commit"
        with daemon.connect() as conn:
            conn.execute("DELETE FROM queues WHERE name = ?", (name,))
        daemon.wait_for_log(event("queue.removed", queue=name))


@pytest.mark.timeout(60)
def test_wait_for_change_through_a_symlinked_database_path(tmp_path: Path) -> None:
    """SQLite puts ``-wal`` beside the file a symlink points to: that is where to watch."""
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    db = tmp_path / "real" / "ewfd.db"
    SQLiteStore(db).close()
    link = tmp_path / "links" / "ewfd.db"
    link.symlink_to(db)
    store = SQLiteStore(link)
    try:
        assert store.wakes_on_change
        store.wait_for_change(0)
        timer = threading.Timer(0.2, insert_job, args=(db,))
        timer.start()
        t0 = time.monotonic()
        store.wait_for_change(WAIT)
        elapsed = time.monotonic() - t0
        timer.join()
        assert len(store.list_workflows()) == 1 and elapsed < WAIT / 4, f"{elapsed:.2f}s"
    finally:
        store.close()


def insert_job(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO jobs (queue, workflow) VALUES ('q', 'w')")
    conn.commit()
    conn.close()
