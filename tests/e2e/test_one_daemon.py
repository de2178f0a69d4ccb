"""One ``ewfd run`` per database: a second one refuses to start, saying who serves it.

Two supervisors on one SQLite file would share the work safely (leases), but fight over
the configured queues, prune twice, and hide each other's workers from ``ewfd ctl
workers``: an operator with systemd running and a manual run in a terminal would never
know. So the supervisor holds a lock on the database file for as long as it runs.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import Daemon


@pytest.mark.timeout(60)
def test_a_second_ewfd_run_on_the_same_database_refuses_to_start(daemon: Daemon) -> None:
    daemon.start()
    second = subprocess.run(
        [sys.executable, "-m", "ewfd", "run", "--config", str(daemon.config_path)],
        cwd=daemon.dir, env=daemon.env(), stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=30, start_new_session=True)
    assert second.returncode == 1, second.stderr
    assert "already" in second.stderr and str(daemon.db) in second.stderr, second.stderr
    assert second.stderr.count("\n") == 1, second.stderr     # one clear line, no traceback
    assert daemon.alive()
    assert daemon.stop() == 0


@pytest.mark.timeout(60)
def test_after_a_stop_the_next_ewfd_run_starts(daemon: Daemon) -> None:
    daemon.start()
    assert daemon.stop() == 0
    daemon.start()            # the lock went with the process
    assert daemon.stop() == 0
