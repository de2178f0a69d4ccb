"""Breakers for issue 10 under the daemon: what a step does to its own process.

Each test is the smallest reproduction of a defect found by trying to break the hardening.
"""

from __future__ import annotations

import contextlib

import psutil
import pytest
from conftest import Daemon, running, wait_until

pytestmark = pytest.mark.e2e


def gone(pid: int) -> bool:
    try:
        return not running(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return True


def start(daemon: Daemon, workers: int = 1) -> Daemon:
    daemon.configure({"app": "breakapp:engine"},
                     queues={"default": {"workers": workers, "lease": "5s"}})
    return daemon.start()


@pytest.mark.timeout(60)
def test_a_helper_a_step_forked_exits_and_records_nothing(daemon: Daemon) -> None:
    """A step forks a helper that ends with ``sys.exit(0)``. The helper took the SystemExit
    for a failed attempt of the step, retried the write forever (``store.error`` "open the
    store after fork" every 5 s) and never exited while its worker lived; it also wrote the
    worker's scoreboard slot."""
    start(daemon)
    uuid = daemon.insert_job("forker")
    daemon.wait_for_status(uuid, "completed")
    helper = int(wait_until(lambda: (daemon.dir / "forked.txt").exists() and
                            (daemon.dir / "forked.txt").read_text().split(), 10, "forked.txt")[0])
    with contextlib.suppress(psutil.NoSuchProcess):
        daemon.registry.append(psutil.Process(helper))
    wait_until(lambda: gone(helper), 15, f"the forked helper {helper} to exit")
    assert daemon.step_counts(uuid) == {"fork_and_exit": 1, "one": 1}
    assert [h["outcome"] for h in daemon.history(uuid)] == ["completed", "completed"]
    assert not [line for line in daemon.logs() if line.get("pid") == helper], \
        "the helper logged as if it were the worker"
    assert daemon.stop() == 0


@pytest.mark.timeout(90)
def test_a_step_that_ignores_sigterm_does_not_make_its_worker_deaf(daemon: Daemon) -> None:
    """A step sets SIGTERM to SIG_IGN (as some libraries do on import or start-up) and
    returns. The worker's own handler was gone for the rest of its life: ``ewfd run``'s
    graceful stop (and a reload, a recycle) never reached it, and it was killed at
    ``shutdown_timeout``. The worker's handlers are its own again after every attempt."""
    daemon.configure({"app": "breakapp:engine", "shutdown_timeout": "60s"},
                     queues={"default": {"workers": 1, "lease": "5s"}})
    daemon.start()
    uuid = daemon.insert_job("deaf")
    daemon.wait_started(uuid)
    daemon.release(uuid)
    daemon.wait_for_status(uuid, "completed")
    assert daemon.stop(timeout=30) == 0
    assert not daemon.events("worker.killed")
