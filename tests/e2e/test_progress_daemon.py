"""``ctx.progress`` under ``ewfd run``: what ``ctl workers``, ``ctl show`` and the log show
while a step reports, and that a burst of reports costs a handful of log lines."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from conftest import Daemon, event, wait_until

pytestmark = pytest.mark.e2e

WAIT = 30.0
MESSAGE = "row 10000 of 20000"


def ctl(daemon: Daemon, *args: str) -> str:
    assert daemon.config_path is not None
    done = subprocess.run([sys.executable, "-m", "ewfd", "ctl", *args, "--config",
                           str(daemon.config_path)], env=daemon.env(), capture_output=True,
                          text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ctl_json(daemon: Daemon, *args: str) -> Any:
    return json.loads(ctl(daemon, *args, "--json"))


@pytest.mark.timeout(120)
def test_workers_show_and_the_log_follow_a_step_that_reports_progress(daemon: Daemon) -> None:
    daemon.configure(ewfd={"app": "opsapp:engine"}, queues={"default": {"workers": 2}})
    daemon.start()
    uuid = daemon.insert_job("crunch", {"n": 1})
    wait_until((daemon.dir / f"started-{uuid}").exists, WAIT, "the crunch step to report")

    def worker_row() -> dict[str, Any] | None:
        rows = ctl_json(daemon, "workers")
        return next((r for r in rows if r["workflow_uuid"] == uuid
                     and r["progress"] == 0.5), None)

    row = wait_until(worker_row, WAIT, "ctl workers to show the progress")
    assert row["progress_message"] == MESSAGE and row["step"] == "crunch"
    assert f"50% {MESSAGE}" in ctl(daemon, "workers")

    def shown() -> dict[str, Any] | None:
        wf: dict[str, Any] = ctl_json(daemon, "show", uuid)
        progress = wf["progress"]
        return wf if progress and progress["fraction"] == 0.5 else None

    wf = wait_until(shown, WAIT, "ctl show to show the progress")
    assert wf["progress"]["message"] == MESSAGE and wf["progress"]["step"] == "crunch"
    assert wf["status"] == "running"
    text = ctl(daemon, "show", uuid)
    assert f"progress      50% {MESSAGE} (step crunch, " in text

    lines = daemon.events("step.progress", workflow_uuid=uuid)
    assert 1 <= len(lines) <= 5             # 10,001 reports in a burst: a handful of lines
    last = daemon.wait_for_log(lambda line: event("step.progress", workflow_uuid=uuid)(line)
                               and line.get("fraction") == 0.5)
    assert (last["message"], last["step"], last["attempt"], last["queue"]) == (
        MESSAGE, "crunch", 1, "default")

    (daemon.dir / f"release-{uuid}").touch()
    daemon.wait_for_status(uuid, "completed")
    assert ctl_json(daemon, "show", uuid)["progress"] is None
    wait_until(lambda: all(r["progress"] is None for r in ctl_json(daemon, "workers")), WAIT,
               "the workers' progress to clear")
