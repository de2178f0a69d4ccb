"""Queues an operator changes while the daemon runs: ``close-queue --drain`` (no new work,
what the queue holds runs, then it is closed), and one source of truth for the settings
of a queue the config defines (``create-queue`` and ``close-queue`` on it are refused,
the API cannot change it behind the daemon's back, ``ctl queues`` says where each queue's
settings come from)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import Any

import psutil
import pytest
from conftest import Daemon, event, wait_until

pytestmark = pytest.mark.e2e


def ctl(daemon: Daemon, *args: str, db: bool = False) -> subprocess.CompletedProcess[str]:
    where = ["--db", str(daemon.db)] if db else ["--config", str(daemon.config_path)]
    return subprocess.run([sys.executable, "-m", "ewfd", "ctl", *args, *where],
                          cwd=daemon.dir, env=daemon.env(), capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def ok_json(daemon: Daemon, *args: str) -> Any:
    result = ctl(daemon, *args, "--json")
    assert result.returncode == 0, result
    return json.loads(result.stdout)


def queue_row(daemon: Daemon, name: str) -> dict[str, Any]:
    return next(r for r in ok_json(daemon, "queues") if r["queue"] == name)


def start_batch(daemon: Daemon) -> tuple[str, list[str]]:
    """The daemon with a one-worker queue ``batch`` (made by ctl) holding a blocked
    workflow and two pending behind it: (the running one, the pending ones)."""
    daemon.start()
    assert ctl(daemon, "create-queue", "batch", "--workers", "1").returncode == 0
    daemon.wait_for_workers(3)
    running = daemon.insert_job("blocking", {"n": 0}, queue="batch")
    daemon.wait_started(running)
    pending = [daemon.insert_job("three", {"n": n}, queue="batch") for n in (1, 2)]
    return running, pending


# -- item 1: close-queue --drain ----------------------------------------------------------
@pytest.mark.timeout(90)
def test_drain_runs_what_the_queue_holds_refuses_new_work_then_closes_it(
        daemon: Daemon) -> None:
    running, pending = start_batch(daemon)
    refused = ctl(daemon, "close-queue", "batch")
    assert refused.returncode == 1
    assert "close-queue batch --drain" in refused.stderr and "pause" not in refused.stderr

    answer = ok_json(daemon, "close-queue", "batch", "--drain")
    assert answer == {"changed": 1, "queue": "batch", "closed": False, "draining": True,
                      "pending": 2, "running": 1, "cancelled": 0, "resumed": False}
    row = queue_row(daemon, "batch")
    assert row["draining"] is True and row["kind"] == "queue"
    daemon.wait_for_log(event("queue.draining", queue="batch"))

    late = daemon.insert_job("three", {"n": 9}, queue="batch")       # by SQL, after the drain
    failed = daemon.wait_for_status(late, "failed")
    assert "queue 'batch' is closing" in failed["error"]
    enqueue = ctl(daemon, "enqueue", "three", "--queue", "batch")
    assert enqueue.returncode == 1 and "closing" in enqueue.stderr, enqueue

    daemon.release(running)
    for uuid in (running, *pending):
        daemon.wait_for_status(uuid, "completed")
    closed = daemon.wait_for_log(event("queue.closed", queue="batch"))
    assert closed["reason"] == "drained"
    daemon.wait_for_workers(2)
    assert queue_row(daemon, "batch")["kind"] == "closed"
    assert not daemon.effects(late)
    text = ctl(daemon, "close-queue", "batch")
    assert text.returncode == 1 and "no queue 'batch'" in text.stderr
    assert daemon.stop() == 0


@pytest.mark.timeout(90)
def test_drain_with_cancel_pending_lets_only_the_running_one_finish(daemon: Daemon) -> None:
    running, pending = start_batch(daemon)
    result = ctl(daemon, "close-queue", "batch", "--cancel-pending")
    assert result.returncode == 0, result
    assert result.stdout.startswith("cancelled 2 pending workflows; draining queue batch"), \
        result.stdout
    for uuid in pending:
        assert daemon.row(uuid)["status"] == "cancelled"
    daemon.release(running)
    daemon.wait_for_status(running, "completed")
    daemon.wait_for_log(event("queue.closed", queue="batch"))
    assert all(not daemon.effects(uuid) for uuid in pending)
    assert daemon.stop() == 0


@pytest.mark.timeout(90)
def test_draining_a_paused_queue_resumes_it_and_an_empty_one_closes_at_once(
        daemon: Daemon) -> None:
    daemon.start()
    assert ctl(daemon, "create-queue", "batch", "--workers", "1").returncode == 0
    assert ctl(daemon, "create-queue", "spare").returncode == 0
    assert ctl(daemon, "pause", "batch").returncode == 0
    uuid = daemon.insert_job("three", {"n": 1}, queue="batch")
    result = ctl(daemon, "close-queue", "batch", "--drain")
    assert result.returncode == 0, result
    assert "it was paused: resumed" in result.stdout
    daemon.wait_for_status(uuid, "completed")
    daemon.wait_for_log(event("queue.closed", queue="batch"))

    empty = ctl(daemon, "close-queue", "spare", "--drain")
    assert (empty.returncode, empty.stdout) == (0, "closed queue spare\n")
    assert daemon.stop() == 0


# -- item 4: one source of truth for a configured queue ------------------------------------
@pytest.mark.timeout(90)
def test_a_configured_queue_is_changed_in_its_config_only(daemon: Daemon) -> None:
    path = daemon.configure(queues={"default": {"workers": 1}, "orders": {"workers": 2}})
    daemon.start()
    for db in (False, True):       # the local config, or only the database, tells ctl
        refused = ctl(daemon, "create-queue", "orders", "--workers", "3", db=db)
        assert refused.returncode == 1, refused
        assert f"queue orders is defined in {path}: edit it there" in refused.stderr
        assert "SIGHUP" in refused.stderr
    closing = ctl(daemon, "close-queue", "orders", "--drain")
    assert closing.returncode == 1 and f"defined in {path}" in closing.stderr
    row = queue_row(daemon, "orders")
    assert (row["workers"], row["origin"], row["defined_in"]) == (2, "config", str(path))

    # The API writes the row anyway: the daemon keeps (and writes back) the config's value.
    api = subprocess.run([sys.executable, "-c", (
        "import sys; from ewfd import Engine, SQLiteStore; "
        "Engine(store=SQLiteStore(sys.argv[1])).create_queue('orders', workers=5)"),
        str(daemon.db)], env=daemon.env(), capture_output=True, text=True, timeout=60)
    assert api.returncode == 0, api
    wins = daemon.wait_for_log(event("queue.config_wins", queue="orders"))
    assert wins["defined_in"] == str(path) and wins["level"] == "warning"
    wait_until(lambda: queue_row(daemon, "orders")["workers"] == 2, 15, "orders back to 2")
    assert queue_row(daemon, "orders")["origin"] == "config"
    assert len(daemon.worker_pids()) == 3
    api = subprocess.run([sys.executable, "-c", (
        "import sys; from ewfd import Engine, SQLiteStore; "
        "Engine(store=SQLiteStore(sys.argv[1])).close_queue('orders')"),
        str(daemon.db)], env=daemon.env(), capture_output=True, text=True, timeout=60)
    assert api.returncode == 0, api
    daemon.wait_for_log(event("queue.config_wins", queue="orders"), count=2)
    wait_until(lambda: "orders" in [r["queue"] for r in ok_json(daemon, "queues")], 15,
               "orders back")
    assert not daemon.events("queue.removed", queue="orders")
    assert len(daemon.worker_pids()) == 3

    assert ctl(daemon, "create-queue", "extra").returncode == 0
    daemon.wait_for_workers(4)
    table = ctl(daemon, "queues")
    assert table.returncode == 0
    header, *rows = table.stdout.splitlines()
    assert header.split()[-1] == "FROM"
    by_name = {line.split()[0]: line.split()[-1] for line in rows if line and line[0] != " "}
    assert (by_name["orders"], by_name["default"], by_name["extra"]) == ("config", "config",
                                                                         "ctl")
    assert f"config: {path} (default, orders): change them there" in table.stderr

    # Removed from the config and reloaded: the queue drains and is closed.
    daemon.configure(queues={"default": {"workers": 1}})
    daemon.send_signal(signal.SIGHUP)
    draining = daemon.wait_for_log(event("queue.draining", queue="orders"))
    assert draining["reason"] == f"removed from {path}"
    daemon.wait_for_log(event("queue.closed", queue="orders"))
    assert "orders" not in [r["queue"] for r in ok_json(daemon, "queues")]
    daemon.wait_for_workers(2)
    assert daemon.stop() == 0


@pytest.mark.timeout(60)
def test_a_paused_queue_with_pending_work_leaves_its_workers_idle(daemon: Daemon) -> None:
    """The old advice "pause it and let it drain" also spun the paused queue's workers at
    full CPU: pending work read as due, and every claim came back empty."""
    daemon.configure(queues={"default": {"workers": 1}})
    daemon.start()
    [worker] = daemon.worker_pids()
    assert ctl(daemon, "pause", "default").returncode == 0
    uuid = daemon.insert_job("three", {"n": 1})
    proc = psutil.Process(worker)
    before = sum(proc.cpu_times()[:2])
    time.sleep(3)   # idle CPU is measured over a span: there is no event to wait for
    used = sum(proc.cpu_times()[:2]) - before
    assert used < 1.0, f"the worker of a paused queue used {used:.2f}s of CPU in 3s"
    assert daemon.row(uuid)["status"] == "pending"
    assert ctl(daemon, "resume", "default").returncode == 0
    daemon.wait_for_status(uuid, "completed")
    assert daemon.stop() == 0
