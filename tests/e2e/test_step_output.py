"""What a step prints is tied to it: every ``worker.output`` line carries the workflow's
uuid, its name and the step, so ``ewfd ctl tail --workflow UUID`` shows a step's own
output, even output written just before the step ends, by a child process, or without
a newline; and the line a worker's death leaves says which step it died in."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import Daemon, event

pytestmark = pytest.mark.e2e

def tail(daemon: Daemon, uuid: str) -> list[dict[str, object]]:
    result = subprocess.run([sys.executable, "-m", "ewfd", "ctl", "tail", "--workflow", uuid,
                             "-n", "1000", "--json", "--config", str(daemon.config_path)],
                            cwd=daemon.dir, env=daemon.env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.timeout(120)
def test_every_line_a_step_prints_carries_its_workflow_and_step(daemon: Daemon) -> None:
    daemon.configure({"app": "outputapp:engine"}, queues={"default": {"workers": 1}})
    daemon.start()
    uuids = [daemon.insert_job("talk", {"lines": 3}) for _ in range(25)]
    for uuid in uuids:        # one worker, back to back: a line printed as a step ends is
        daemon.wait_for_status(uuid, "completed")     # read while the next one runs
    daemon.wait_for_log(event("worker.output", output=f"line {uuids[-1]} bye"))

    outputs = daemon.events("worker.output")
    assert len(outputs) == 25 * 8, [o["output"] for o in outputs][:20]
    for line in outputs:
        _, uuid, step = line["output"].split()[:3]
        assert line.get("workflow_uuid") == uuid, line
        assert line.get("workflow") == "talk", line
        assert line.get("step") == (None if step == "-" else step), line

    mine = tail(daemon, uuids[7])
    printed = sorted(r["output"] for r in mine if r["event"] == "worker.output")
    assert printed == sorted([f"hook {uuids[7]} -", *(f"line {uuids[7]} hello {i}"
                                                       for i in range(3)),
                              f"err {uuids[7]} hello", f"child {uuids[7]} hello",
                              f"tail {uuids[7]} hello", f"line {uuids[7]} bye"])
    assert {r["event"] for r in mine} >= {"workflow.started", "step.started", "worker.output",
                                          "workflow.completed"}
    assert daemon.stop() == 0


@pytest.mark.timeout(60)
def test_the_death_of_a_worker_mid_step_names_the_step(daemon: Daemon) -> None:
    daemon.configure(queues={"default": {"workers": 1, "max_crashes": 1}})
    daemon.start()
    uuid = daemon.insert_job("exiter", {"n": 1})      # e2eapp: "die" prints, then os._exit
    words = daemon.wait_for_log(event("worker.output", output=f"last words of {uuid}"))
    assert (words["workflow_uuid"], words["workflow"], words["step"]) == (uuid, "exiter", "die")
    died = daemon.wait_for_log(event("worker.exited", exit_code=1))
    assert (died["workflow_uuid"], died["workflow"], died["step"]) == (uuid, "exiter", "die")
    assert uuid in [r.get("workflow_uuid") for r in tail(daemon, uuid)
                    if r["event"] == "worker.exited"]
    assert daemon.stop() == 0
