"""A daemon with pending work it must not (or cannot) claim costs nothing, and wakes at once.

CPU is measured with psutil on the supervisor and its workers over a few
seconds: an idle daemon uses well under 1 % of a core; a worker that claims in
a loop (the bug these tests guard against) uses half a core or more. The queue's
``poll_interval`` is long, so only the wake-up can explain a prompt start.
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest
from conftest import Daemon

pytestmark = pytest.mark.e2e

WINDOW = 3.0          # seconds of CPU measurement
MAX_CPU = 5.0         # % of one core for the whole daemon; the broken worker spun at ~57 %
POLL = "10s"          # the queues' poll interval: far longer than any wake-up we accept
PROMPT = 3.0          # seconds: a start after a resume, far below the poll interval


def cpu_percent(daemon: Daemon, seconds: float = WINDOW) -> float:
    """CPU of the supervisor and its workers over ``seconds``, in % of one core."""
    procs = [psutil.Process(daemon.pid)] + [psutil.Process(p) for p in daemon.worker_pids()]

    def used() -> float:
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
        return total

    c0, t0 = used(), time.monotonic()
    time.sleep(seconds)   # the measurement window, not a synchronisation
    return (used() - c0) / (time.monotonic() - t0) * 100


def ctl(daemon: Daemon, *args: str) -> str:
    assert daemon.config_path is not None
    result = subprocess.run([sys.executable, "-m", "ewfd", "ctl", *args, "--config",
                             str(daemon.config_path)], env=daemon.env(), capture_output=True,
                            text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return result.stdout


def insert(daemon: Daemon, queue: str, **columns: object) -> int:
    with daemon.connect() as conn:
        names = ["queue", "workflow", *columns]
        marks = ", ".join("?" * len(names))
        cur = conn.execute(f"INSERT INTO jobs ({', '.join(names)}) VALUES ({marks})",
                           (queue, "three", *columns.values()))
        return int(cur.lastrowid or 0)


@pytest.mark.timeout(90)
def test_paused_queue_with_due_work_costs_nothing_and_resume_wakes_at_once(
        daemon: Daemon) -> None:
    daemon.configure(queues={"default": {"workers": 2, "poll_interval": POLL}})
    daemon.start()
    ctl(daemon, "pause", "default")
    uuids = [daemon.insert_job("three", {"n": i}) for i in range(3)]
    workers = daemon.worker_pids()

    cpu = cpu_percent(daemon)
    assert cpu < MAX_CPU, f"a paused queue with due work costs {cpu:.1f} % of a core"
    assert all(daemon.row(u)["status"] == "pending" for u in uuids)

    t0 = time.monotonic()
    ctl(daemon, "resume", "default")
    for uuid in uuids:
        daemon.wait_for_status(uuid, "completed")
    assert time.monotonic() - t0 < PROMPT, "resumed work waited for the poll, not the wake-up"
    assert daemon.worker_pids() == workers


@pytest.mark.timeout(90)
def test_pending_work_nobody_can_claim_costs_nothing(daemon: Daemon) -> None:
    """A retry wait, rows whose ``not_before`` is not a number, rows of an unknown queue and
    rows of a queue closed under them: pending in the database, claimable by no worker."""
    daemon.configure(queues={"default": {"workers": 2, "poll_interval": POLL},
                             "bad": {"workers": 1, "poll_interval": POLL}})
    daemon.start()
    workers = daemon.worker_pids()
    insert(daemon, "default", not_before=time.time() + 3600)      # a retry wait
    insert(daemon, "bad", not_before="soon")                       # a queue of bad rows only
    insert(daemon, "bad", not_before=b"\x00")
    unknown = insert(daemon, "nope")                                # an unknown queue
    ctl(daemon, "create-queue", "extra", "--workers", "1", "--poll-interval", POLL)
    daemon.wait_for_workers(4)
    ctl(daemon, "pause", "extra")
    closed = insert(daemon, "extra")
    ctl(daemon, "close-queue", "extra", "--force")                  # a closed queue
    daemon.wait_for_workers(3)
    daemon.wait_for_status(daemon.row(unknown)["uuid"], "failed")
    daemon.wait_for_status(daemon.row(closed)["uuid"], ("failed", "completed"))

    cpu = cpu_percent(daemon)
    assert cpu < MAX_CPU, f"unclaimable pending work costs {cpu:.1f} % of a core"
    assert daemon.worker_pids() == workers, "a worker died (or was restarted)"
    assert not daemon.events("worker.crashed")

    uuid = daemon.insert_job("three")                             # good work still runs
    t0 = time.monotonic()
    daemon.wait_for_status(uuid, "completed")
    assert time.monotonic() - t0 < PROMPT
