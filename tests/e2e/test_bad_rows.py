"""Rows a person wrote by hand into the daemon's tables (issue 10, D9).

Whatever one row holds, it is validated where it is read: a bad jobs row ends
``failed`` with an error naming the column, a bad queues row is skipped with an
error (the config's settings win for a configured queue), and neither stops the
daemon, a worker or a listing.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from typing import Any

import pytest
from conftest import Daemon, event

pytestmark = pytest.mark.e2e


def insert(daemon: Daemon, **columns: Any) -> int:
    """One jobs row with exactly these columns (others take their defaults); its id."""
    columns.setdefault("workflow", "three")
    names = ", ".join(columns)
    marks = ", ".join("?" * len(columns))
    with contextlib.closing(daemon.connect()) as conn, conn:
        cur = conn.execute(f"INSERT INTO jobs ({names}) VALUES ({marks})", list(columns.values()))
        assert cur.lastrowid is not None
        return cur.lastrowid


def execute(daemon: Daemon, sql: str, *params: Any) -> None:
    with contextlib.closing(daemon.connect()) as conn, conn:
        conn.execute(sql, params)


def ctl(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ewfd", "ctl", *args, "--db", str(daemon.db)],
                          capture_output=True, text=True, timeout=60, check=False)


def assert_no_crash(daemon: Daemon) -> None:
    assert daemon.alive(), daemon._tail()
    for name in ("worker.crashed", "worker.restarted", "supervisor.failed"):
        assert not daemon.events(name), (name, daemon._tail())


# -- jobs -----------------------------------------------------------------------------------
PENDING_ROWS: dict[str, tuple[dict[str, Any], str]] = {
    # what is wrong: (the columns, the column the error must name)
    "no queue": ({"queue": None}, "queue"),
    "current_step = steps": ({"current_step": 3}, "current_step"),
    "current_step past the steps": ({"current_step": 7}, "current_step"),
    "not_before is text": ({"not_before": "soon"}, "not_before"),
    "attempt is text": ({"attempt": "x"}, "attempt"),
    "attempt < 0": ({"attempt": -2}, "attempt"),
    "crashes < 0": ({"crashes": -1}, "crashes"),
    "crashes is text": ({"crashes": "many"}, "crashes"),
    "no steps": ({"steps": "[]"}, "steps"),
    "steps not a list": ({"steps": '{"name": "one"}'}, "steps"),
    "metadata not an object": ({"metadata": "[1, 2]"}, "metadata"),
    "cancel_requested is text": ({"cancel_requested": "yes"}, "cancel_requested"),
    "uuid is a blob": ({"uuid": b"\x00\x01"}, "uuid"),
}


@pytest.mark.timeout(90)
def test_bad_pending_rows_fail_naming_the_column_and_good_ones_still_run(
        daemon: Daemon) -> None:
    daemon.start()
    bad = {why: (insert(daemon, **cols), column) for why, (cols, column) in PENDING_ROWS.items()}
    good = insert(daemon, state=json.dumps({"n": 1}))
    daemon.wait_for_status(good, "completed")
    for why, (key, column) in bad.items():
        row = daemon.wait_for_status(key, "failed")
        assert column in (row["error"] or ""), (why, row["error"])
        if isinstance(row["uuid"], str):
            assert not daemon.events("workflow.completed", workflow_uuid=row["uuid"]), why
            assert daemon.events("job.rejected", workflow_uuid=row["uuid"]), why
    assert_no_crash(daemon)
    listed = ctl(daemon, "queues", "--json")
    assert listed.returncode == 0, listed.stderr
    no_queue = [q for q in json.loads(listed.stdout) if q["queue"] is None]
    assert no_queue and no_queue[0]["failed"] == 1, listed.stdout
    assert daemon.stop() == 0


@pytest.mark.timeout(90)
def test_running_rows_with_bad_lease_fields_are_taken_back(daemon: Daemon) -> None:
    daemon.configure(queues={"default": {"workers": 2, "lease": "2s"}})
    daemon.start()
    taken_back = [
        insert(daemon, status="running"),                                   # no lease at all
        insert(daemon, status="running", lease_owner="elsewhere:1:1"),      # never expires
        insert(daemon, status="running", lease_owner="elsewhere:1:1", lease_expires="later"),
        insert(daemon, status="running", lease_owner=b"\xff\x00", lease_expires=1.0),
        insert(daemon, status="running", lease_owner="x:y", lease_expires=1.0,
               step_started_at="yesterday"),
    ]
    failed = [
        insert(daemon, status="running", lease_expires=1.0, crashes="x"),
        insert(daemon, status="running", lease_expires=1.0, attempt="one"),
        insert(daemon, status="running", lease_expires=1.0, current_step=9),
    ]
    for uuid in taken_back:
        daemon.wait_for_status(uuid, "completed")
    for uuid, column in zip(failed, ("crashes", "attempt", "current_step"), strict=True):
        row = daemon.wait_for_status(uuid, "failed")
        assert column in (row["error"] or ""), row
    assert_no_crash(daemon)
    assert daemon.stop() == 0


# -- queues ---------------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_bad_queue_rows_never_stop_the_supervisor_and_the_config_wins(daemon: Daemon) -> None:
    daemon.configure(queues={"default": {"workers": 2, "lease": "30s"}})
    daemon.start()
    assert daemon.stop() == 0
    execute(daemon, "UPDATE queues SET lease = 0.5 WHERE name = 'default'")
    execute(daemon, "INSERT INTO queues (name, workers) VALUES ('neg', -1)")
    execute(daemon, "INSERT INTO queues (name, workers) VALUES ('text', 'two')")
    execute(daemon, "INSERT INTO queues (name, poll_interval) VALUES ('slow', 'x')")
    execute(daemon, "INSERT INTO queues (name, workers) VALUES ('extra', 1)")
    queued = insert(daemon, state=json.dumps({"n": 1}))
    extra = insert(daemon, queue="extra")

    daemon.start(workers=3)                   # 2 default (config) + 1 extra; none for the rest
    daemon.wait_for_status(queued, "completed")
    daemon.wait_for_status(extra, "completed")
    invalid = {line["queue"]: line["error"] for line in daemon.events("queue.invalid")}
    assert {"default", "neg", "text", "slow"} <= set(invalid), daemon._tail()
    assert "lease" in invalid["default"] and "workers" in invalid["neg"]
    assert "workers" in invalid["text"] and "poll_interval" in invalid["slow"]
    with contextlib.closing(daemon.connect()) as conn:   # the config's settings were stored
        assert conn.execute("SELECT lease FROM queues WHERE name='default'").fetchone()[0] == 30

    seen = len(daemon.events("queue.invalid"))
    execute(daemon, "UPDATE queues SET workers = -1 WHERE name = 'extra'")   # while running
    daemon.wait_for_log(event("queue.invalid", queue="extra"))
    again = insert(daemon, queue="extra")
    daemon.wait_for_status(again, "completed")          # the pool kept its last good settings
    assert not daemon.events("queue.removed")
    assert len(daemon.events("queue.invalid")) == seen + 1, "logged once, not every second"

    listed = ctl(daemon, "queues", "--json")
    assert listed.returncode == 0, listed.stderr
    names = {q["queue"]: q for q in json.loads(listed.stdout)}
    assert {"default", "neg", "text", "slow", "extra"} <= set(names)
    assert "workers" in names["neg"]["invalid"]
    assert ctl(daemon, "queues").returncode == 0
    assert_no_crash(daemon)
    assert daemon.stop() == 0
