"""Workers and supervisors that die, stop or overrun: nothing lost, nothing run twice at once."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest
from conftest import Daemon, event, running, wait_until

pytestmark = pytest.mark.e2e


def outcomes(daemon: Daemon, uuid: str) -> list[tuple[str, str]]:
    return [(h["step"], h["outcome"]) for h in daemon.history(uuid)]


@pytest.mark.timeout(30)
def test_kill_9_of_a_worker_mid_step_gets_a_new_worker_and_the_workflow_completes(
        daemon: Daemon) -> None:
    daemon.start()
    uuid = daemon.insert_job("blocking", {"n": 1})
    victim = daemon.wait_started(uuid)
    before = daemon.worker_pids()
    assert victim in before
    os.kill(victim, signal.SIGKILL)
    exited = daemon.wait_for_log(event("worker.exited", worker_pid=victim))
    assert exited["signal"] == "SIGKILL" and "exit_code" not in exited
    daemon.release(uuid)
    row = daemon.wait_for_status(uuid, "completed")
    assert (row["current_step"], row["error"]) == (3, None)
    pids = daemon.wait_for_workers(2)
    assert victim not in pids and set(pids) - set(before), "no replacement worker"
    assert daemon.step_counts(uuid) == {"one": 1, "block": 2, "three": 1}
    assert outcomes(daemon, uuid) == [("one", "completed"), ("block", "interrupted"),
                                      ("block", "completed"), ("three", "completed")]
    interrupted = daemon.history(uuid)[1]
    assert "SIGKILL" in interrupted["error"] and interrupted["worker_pid"] == victim


@pytest.mark.timeout(40)
def test_kill_9_of_the_supervisor_leaves_no_worker_and_a_restart_finishes_the_work(
        daemon: Daemon) -> None:
    daemon.start()   # the default 30 s lease: only the release at start can be quick
    uuid = daemon.insert_job("blocking", {"n": 1})
    daemon.wait_started(uuid)
    workers = [psutil.Process(pid) for pid in daemon.worker_pids()]
    assert len(workers) == 2
    os.kill(daemon.pid, signal.SIGKILL)
    assert daemon.proc is not None and daemon.proc.wait(10) == -signal.SIGKILL
    wait_until(lambda: not any(running(w) for w in workers), 5,
               f"the workers {[w.pid for w in workers]} to die with their supervisor")
    assert daemon.row(uuid)["status"] == "running"     # until someone notices
    queued = [daemon.insert_job("three", {"n": n}) for n in range(3)]

    daemon.release(uuid)
    began = time.monotonic()
    daemon.start()
    daemon.wait_for_status(uuid, "completed", timeout=20)
    restart = time.monotonic() - began
    for other in queued:
        daemon.wait_for_status(other, "completed")
    print(f"\nrestart after supervisor kill -9: interrupted workflow completed in "
          f"{restart:.2f} s (lease 30 s)")
    assert restart < 10, restart
    assert daemon.step_counts(uuid) == {"one": 1, "block": 2, "three": 1}
    interrupted = [h for h in daemon.history(uuid) if h["outcome"] == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0]["step"] == "block"
    assert daemon.stop() == 0


@pytest.mark.timeout(40)
def test_a_step_that_kills_its_worker_every_time_fails_after_max_crashes(
        daemon: Daemon) -> None:
    daemon.configure(queues={"default": {"workers": 2, "max_crashes": 3}})
    daemon.start()
    uuid = daemon.insert_job("exiter")
    row = daemon.wait_for_status(uuid, "failed", timeout=25)
    assert row["error"].startswith("step die: ") and "worker died 3 times" in row["error"], row
    assert daemon.step_counts(uuid) == {"one": 1, "die": 3}
    assert outcomes(daemon, uuid) == [("one", "completed")] + [("die", "interrupted")] * 3
    assert daemon.wait_for_log(event("workflow.failed", workflow_uuid=uuid))
    assert daemon.events("worker.restarted")
    # What a dying worker wrote last, even without a newline, is logged, not dropped.
    words = [line for line in daemon.events("worker.output")
             if line["output"] == f"last words of {uuid}"]
    assert len(words) == 3, words
    # The daemon stays healthy: a normal job afterwards completes.
    good = daemon.insert_job("three", {"n": 1})
    daemon.wait_for_status(good, "completed", timeout=20)
    assert daemon.alive()
    assert daemon.stop() == 0


@pytest.mark.timeout(40)
def test_a_worker_stopped_past_its_lease_cannot_overwrite_the_workflow(daemon: Daemon) -> None:
    daemon.configure(queues={"default": {"workers": 2, "lease": "2s"}})
    daemon.start()
    uuid = daemon.insert_job("fenced")
    stale = daemon.wait_started(uuid)
    os.kill(stale, signal.SIGSTOP)
    try:
        row = daemon.wait_for_status(uuid, "completed", timeout=20)
        winner = json.loads(row["state"])["by"]
        assert winner != stale
        daemon.release(uuid)      # the stale worker's step can now return...
    finally:
        os.kill(stale, signal.SIGCONT)
    # ...and its write is refused.
    lost = daemon.wait_for_log(event("lease.lost", workflow_uuid=uuid))
    assert lost["pid"] == stale
    after = daemon.row(uuid)
    assert after["status"] == "completed" and json.loads(after["state"])["by"] == winner
    assert (after["token"], after["updated_at"]) == (row["token"], row["updated_at"])
    assert daemon.step_counts(uuid) == {"hold": 2}
    assert outcomes(daemon, uuid) == [("hold", "interrupted"), ("hold", "completed")]
    assert stale in daemon.worker_pids()      # the stale worker carries on as a healthy worker
    assert daemon.stop() == 0


@pytest.mark.timeout(40)
def test_a_step_that_ignores_its_timeout_is_killed_and_the_attempt_counts_as_failed(
        daemon: Daemon) -> None:
    daemon.configure({"timeout_grace": "1s"}, queues={"default": {"workers": 1}})
    daemon.start()
    uuid = daemon.insert_job("stubborn")
    row = daemon.wait_for_status(uuid, "failed", timeout=30)
    assert row["error"].startswith("step ignore: timed out after 0.5s"), row
    assert row["crashes"] == 0
    history = daemon.history(uuid)
    assert [(h["step"], h["attempt"], h["outcome"]) for h in history] == \
        [("ignore", 1, "failed"), ("ignore", 2, "failed")]
    assert all("timed out after" in h["error"] for h in history)
    assert daemon.step_counts(uuid) == {"ignore": 2}
    killed = daemon.events("worker.killed", workflow_uuid=uuid)
    assert len(killed) == 2 and all(k["reason"] == "step timeout" for k in killed)
    assert daemon.stop() == 0


@pytest.mark.timeout(30)
def test_a_step_over_its_timeout_is_interrupted_inside_the_worker(daemon: Daemon) -> None:
    daemon.configure({"timeout_grace": "10s"}, queues={"default": {"workers": 1}})
    daemon.start()
    worker = daemon.worker_pids()
    uuid = daemon.insert_job("sleepy", {"seconds": 30})
    row = daemon.wait_for_status(uuid, "failed", timeout=8)   # long before timeout + grace
    assert row["error"] == "step nap: timed out after 0.5s", row
    assert [(h["outcome"], h["error"]) for h in daemon.history(uuid)] == \
        [("failed", "timed out after 0.5s")]
    assert not daemon.events("worker.killed") and daemon.worker_pids() == worker
    assert daemon.stop() == 0
