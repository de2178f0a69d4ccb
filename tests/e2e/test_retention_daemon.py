"""``[retention]`` under ``ewfd run``: with a retention of 1s, finished workflows and their
history disappear on their own, while pending and running ones stay; ``ctl queues`` says
what is kept and the log counts what went."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from typing import Any

import pytest
from conftest import Daemon, wait_until

pytestmark = pytest.mark.e2e

WAIT = 30.0


def ctl(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    assert daemon.config_path is not None
    done = subprocess.run([sys.executable, "-m", "ewfd", "ctl", *args, "--config",
                           str(daemon.config_path)], env=daemon.env(), capture_output=True,
                          text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    return done


def uuids(daemon: Daemon) -> set[str]:
    with contextlib.closing(daemon.connect()) as conn:
        return {r[0] for r in conn.execute("SELECT uuid FROM jobs")}


def orphan_history(daemon: Daemon) -> int:
    with contextlib.closing(daemon.connect()) as conn:
        return int(conn.execute("SELECT count(*) FROM history WHERE job_id NOT IN "
                                "(SELECT id FROM jobs)").fetchone()[0])


@pytest.mark.timeout(120)
def test_finished_workflows_go_after_their_retention_and_unfinished_ones_stay(
        daemon: Daemon) -> None:
    path = daemon.configure(ewfd={"app": "opsapp:engine"},
                            queues={"default": {"workers": 2}, "held": {"workers": 1}})
    with path.open("a") as fh:
        fh.write('\n[retention]\ncompleted = "1s"\nfailed = "1s"\ncancelled = "1s"\n'
                 'interval = "1s"\n')
    daemon.start()
    ctl(daemon, "pause", "held")
    done = [daemon.insert_job("double", {"n": i}) for i in range(3)]
    failed = daemon.insert_job("boom")
    cancelled = daemon.insert_job("double", queue="held")
    ctl(daemon, "cancel", cancelled)
    pending = daemon.insert_job("double", queue="held")
    running = daemon.insert_job("gated")
    wait_until((daemon.dir / f"started-{running}").exists, WAIT, "the gated step to run")

    gone = {*done, failed, cancelled}
    wait_until(lambda: not gone & uuids(daemon), WAIT, "the finished workflows to be pruned")
    assert {pending, running} <= uuids(daemon)
    assert daemon.row(pending)["status"] == "pending"
    assert daemon.row(running)["status"] == "running"
    assert orphan_history(daemon) == 0             # their history went with them

    pruned = daemon.events("retention.pruned")
    assert sum(line.get("completed", 0) for line in pruned) >= 3
    assert sum(line.get("failed", 0) for line in pruned) >= 1
    assert sum(line.get("cancelled", 0) for line in pruned) >= 1

    rows: list[dict[str, Any]] = json.loads(ctl(daemon, "queues", "--json").stdout)
    policy = rows[0]["retention"]
    assert (policy["completed"], policy["failed"], policy["cancelled"], policy["source"]) == (
        1.0, 1.0, 1.0, "daemon")

    def footer() -> str | None:
        line = ctl(daemon, "queues").stderr.strip().splitlines()[-1]
        return line if "pruned since it started" in line and "5 pruned" in line else None

    line = wait_until(footer, WAIT, "ctl queues to report the pruning")   # published every 5s
    assert line.startswith("retention: completed 1s, failed 1s, cancelled 1s (daemon: a pass "
                           "every 1s, last ")

    (daemon.dir / f"release-{running}").touch()
    wait_until(lambda: running not in uuids(daemon), WAIT, "the last one, finished, to go")
    assert pending in uuids(daemon)
