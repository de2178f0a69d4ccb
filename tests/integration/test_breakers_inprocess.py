"""Breakers for issue 10: inputs and timings the hardening did not foresee.

Each test is the smallest reproduction of one defect found by trying to break the
hardening (a step that forks, rows an outside program wrote that are not UTF-8, ...).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from waiting import wait_until

from ewfd import SQLiteStore, WorkflowStatus

HERE = Path(__file__).resolve().parent
WAIT = 20.0




def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


# -- a step that forks: the forked process is not the attempt ---------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["exit", "raise", "return"])
@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_a_process_a_step_forked_never_records_or_continues_the_attempt(
        tmp_path: Path, kind: str, how: str) -> None:
    """A step forks a helper that ends with ``sys.exit(0)`` (or raises, or returns). The
    helper took the SystemExit for a failed attempt of the step: with SQLite it retried the
    write forever ("open the store after fork") and never exited; in memory it failed the
    workflow in its copy (or, returning, ran the next step a second time) and came back out
    of ``engine.run`` as a second copy of the program. The helper must end as Python would
    end it (its exception propagates; returning ends it), recording nothing."""
    out = (tmp_path / "out.txt").open("wb")
    proc = subprocess.Popen([sys.executable, str(HERE / "forkstep.py"), kind, how,
                             str(tmp_path)], stdout=out, stderr=subprocess.STDOUT)
    child = 0
    try:
        assert proc.wait(timeout=WAIT) == 0, (tmp_path / "out.txt").read_text()
        child = int((tmp_path / "child").read_text())
        wait_until(lambda: gone(child), WAIT, f"the forked child {child} to exit")
        assert (tmp_path / "status").read_text() == "completed"
        assert (tmp_path / "second").read_text().split() == [str(proc.pid)]
        assert "store.error" not in (tmp_path / "out.txt").read_text()
    finally:
        for pid in (proc.pid, child):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if pid:
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        out.close()


# -- text that is not UTF-8 read inside a write ------------------------------------------------
def _bad_row(db: Path, sql: str) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


def test_a_pending_row_whose_queue_is_not_utf8_is_rejected(tmp_path: Path) -> None:
    """A row an outside program wrote with a queue name of other bytes: the daemon's sweep
    of unrunnable rows read it inside its write and raised StoreError ("Could not decode to
    UTF-8") every second, forever; the row stayed pending, and the supervisor's later duties
    of that tick (queues, auto_delete, memory, checkpoint, ctl workers) never ran."""
    store = SQLiteStore(tmp_path / "ewfd.db")
    try:
        _bad_row(tmp_path / "ewfd.db", "INSERT INTO jobs (uuid, queue, workflow) VALUES "
                 "('u1', CAST(X'71ff' AS TEXT), 'w')")
        rejected = store.reject_unknown_queues()
        assert [uuid for uuid, _ in rejected] == ["u1"]
        assert "queue" in rejected[0][1]
        wf = store.load_workflow("u1")
        assert wf.status == WorkflowStatus.FAILED
        assert wf.error is not None and "queue" in wf.error
    finally:
        store.close()


@pytest.mark.parametrize("column", ["uuid", "workflow", "queue", "lease_owner"])
def test_an_expired_running_row_with_text_that_is_not_utf8_is_taken_back(
        tmp_path: Path, column: str) -> None:
    """One running row whose lease expired, holding bytes that are not UTF-8 in a text
    column: the expired-lease sweep read it inside its write and raised StoreError every
    time, so no expired lease of ANY workflow was ever taken back again."""
    store = SQLiteStore(tmp_path / "ewfd.db")
    try:
        values = {"uuid": "'good'", "workflow": "'w'", "queue": "'q'", "lease_owner": "'x:1:1'"}
        store.save_queue(__import__("ewfd").QueueSpec("q"))
        _bad_row(tmp_path / "ewfd.db", "INSERT INTO jobs (uuid, queue, workflow, status, "
                 "lease_owner, lease_expires) VALUES ('other', 'q', 'w', 'running', 'y:1:1', 1)")
        values[column] = "CAST(X'71ff' AS TEXT)"
        _bad_row(tmp_path / "ewfd.db", "INSERT INTO jobs (uuid, workflow, queue, lease_owner, "
                 f"status, lease_expires) VALUES ({values['uuid']}, {values['workflow']}, "
                 f"{values['queue']}, {values['lease_owner']}, 'running', 1)")
        taken = store.interrupt(expired=True, reason="lease expired")
        assert len(taken) == 2
        assert store.load_workflow("other").status == WorkflowStatus.PENDING
    finally:
        store.close()
