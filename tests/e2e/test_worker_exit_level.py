"""How the supervisor logs a worker's end: a worker killed by a signal, or exiting with an
error code, is something an operator must see (warning); a worker that ends because it
was told to (a graceful stop, a reload, a recycle: exit 0) is routine (info)."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import Daemon, event

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(40)
def test_a_worker_killed_by_a_signal_is_a_warning_a_clean_exit_is_info(daemon: Daemon) -> None:
    daemon.start()
    victim, other = daemon.worker_pids()
    os.kill(victim, signal.SIGKILL)
    killed = daemon.wait_for_log(event("worker.exited", worker_pid=victim))
    assert (killed["signal"], killed["level"]) == ("SIGKILL", "warning")
    daemon.wait_for_workers(2)
    assert daemon.stop() == 0
    clean = daemon.wait_for_log(event("worker.exited", worker_pid=other))
    assert (clean["exit_code"], clean["level"]) == (0, "info")
