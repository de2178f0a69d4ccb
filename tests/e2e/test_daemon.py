"""``ewfd run`` end to end: jobs in, results and JSON logs out (CONTRACT sections 4, 5, 7)."""

from __future__ import annotations

import json
import stat
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import e2eapp
import psutil
import pytest
from conftest import Daemon, event, read_json_lines

from ewfd import Engine, SQLiteStore, WorkflowStatus

pytestmark = pytest.mark.e2e

THREE_STEPS = ("one", "two", "three")


def expected_state(n: int) -> dict[str, Any]:
    return {"n": n, **{f"out_{step}": f"{step}({n})" for step in THREE_STEPS}}


def epoch(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


@pytest.mark.timeout(30)
def test_jobs_inserted_by_sql_and_by_the_api_all_complete(daemon: Daemon) -> None:
    daemon.start()
    by_sql = [daemon.insert_job("three", {"n": n}) for n in range(5)]
    engine = e2eapp.register(Engine(store=SQLiteStore(daemon.db)))
    try:
        by_api = []
        for n in range(5, 10):
            wf = engine.new_workflow("three", queue="default", state={"n": n})
            assert engine.run(wf).status == WorkflowStatus.PENDING   # queued: returns at once
            by_api.append(wf.uuid)
    finally:
        engine.close()

    for n, uuid in enumerate(by_sql + by_api):
        row = daemon.wait_for_status(uuid, "completed")
        assert json.loads(row["state"]) == expected_state(n)
        assert (row["current_step"], row["error"]) == (3, None)
        assert daemon.step_counts(uuid) == dict.fromkeys(THREE_STEPS, 1)
        outcomes = [(h["step"], h["outcome"]) for h in daemon.history(uuid)]
        assert outcomes == [(step, "completed") for step in THREE_STEPS]


@pytest.mark.timeout(30)
def test_every_step_is_logged_with_the_contract_keys(daemon: Daemon) -> None:
    daemon.start()
    uuid = daemon.insert_job("three", {"n": 1})
    daemon.wait_for_status(uuid, "completed")
    daemon.wait_for_log(event("workflow.completed", workflow_uuid=uuid))
    assert daemon.stop() == 0

    lines = daemon.logs()   # every line one JSON object, or this fails
    for line in lines:
        assert {"timestamp", "level", "event", "pid"} <= line.keys(), line
        assert isinstance(line["pid"], int)
        assert line["timestamp"].endswith("Z") or line["timestamp"].endswith("+00:00"), line
        assert datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).utcoffset() \
            is not None
    names = [line["event"] for line in lines]
    for name in ("supervisor.started", "supervisor.stopping", "supervisor.stopped"):
        assert names.count(name) == 1, name
    started = [line for line in lines if line["event"] == "worker.started"]
    assert len(started) == 2 and all(line["queue"] == "default" for line in started)
    exited = [line for line in lines if line["event"] == "worker.exited"]
    assert sorted(line["worker_pid"] for line in exited) == sorted(w["pid"] for w in started)
    assert all(line["exit_code"] == 0 for line in exited)

    work = {"queue": "default", "workflow_uuid": uuid, "workflow": "three"}
    ours = [line for line in lines if line.get("workflow_uuid") == uuid]
    for line in ours:
        assert {k: line.get(k) for k in work} == work, line
        assert line["pid"] in {w["pid"] for w in started}   # the work ran in a worker
    for name in ("workflow.started", "workflow.completed"):
        assert [line["event"] for line in ours].count(name) == 1
    for step in THREE_STEPS:
        begun = [line for line in ours if line["event"] == "step.started"
                 and line.get("step") == step]
        done = [line for line in ours if line["event"] == "step.completed"
                and line.get("step") == step]
        assert len(begun) == len(done) == 1, step
        assert begun[0]["attempt"] == done[0]["attempt"] == 1
        assert isinstance(done[0]["duration_ms"], int | float) and done[0]["duration_ms"] >= 0
    assert daemon.stdout_path.read_text() == ""    # everything went to the log file


BAD_ROWS = [
    ({"workflow": "no_such_workflow", "raw_state": "{}"}, "unknown workflow"),
    ({"workflow": "three", "raw_state": "{}", "queue": "no_such_queue"}, "unknown queue"),
    ({"workflow": "three", "raw_state": "[1,2]"}, "JSON object"),
    ({"workflow": "three", "raw_state": "{nope"}, "not valid JSON"),
]


@pytest.mark.timeout(30)
def test_bad_rows_end_failed_with_the_reason_and_the_daemon_carries_on(daemon: Daemon) -> None:
    daemon.start()
    workers = daemon.worker_pids()
    bad = [(daemon.insert_job(**row), reason) for row, reason in BAD_ROWS]
    good = daemon.insert_job("three", {"n": 7})
    for uuid, reason in bad:
        row = daemon.wait_for_status(uuid, "failed", timeout=10)
        assert reason in (row["error"] or ""), row
        rejected = daemon.wait_for_log(event("job.rejected", workflow_uuid=uuid))
        assert reason in rejected["error"]
    row = daemon.wait_for_status(good, "completed")
    assert json.loads(row["state"]) == expected_state(7)
    assert daemon.alive()
    assert daemon.events("worker.exited") == []      # no worker crashed on a bad row
    assert daemon.worker_pids() == workers


@pytest.mark.timeout(30)
@pytest.mark.parametrize("log_file", ["file", "stdout"])
def test_what_a_step_prints_becomes_worker_output_lines(daemon: Daemon, log_file: str) -> None:
    if log_file == "stdout":   # the log stream and the processes' stdout are one pipe
        daemon.configure({"log_file": "-"})
        daemon.log_path = daemon.stdout_path
    daemon.extra_env["E2E_PRINT_AT_IMPORT"] = "1"
    daemon.start()
    uuid = daemon.insert_job("printer")
    daemon.wait_for_status(uuid, "completed")
    # The worker is still alive: what it printed must arrive now, not when it exits.
    for text in (f"to stdout from {uuid}", f"to stderr from {uuid}",
                 '{"not": "a log line"} but it looks like one'):
        line = daemon.wait_for_log(event("worker.output", output=text), timeout=10)
        assert line["queue"] == "default" and line["worker_pid"] in daemon.worker_pids()
    assert daemon.stop() == 0
    daemon.logs()   # still one JSON object per line
    if log_file == "file":
        assert daemon.stdout_path.read_text() == ""
    assert "e2eapp: imported" in daemon.stderr_path.read_text()   # stray output: stderr


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


@pytest.mark.timeout(30)
def test_a_worker_that_closes_its_output_does_not_make_the_supervisor_spin(
        daemon: Daemon) -> None:
    daemon.start()
    uuid = daemon.insert_job("mute")
    daemon.wait_started(uuid)
    supervisor = [psutil.Process(daemon.pid)]
    before = cpu_seconds(supervisor)
    time.sleep(1.5)   # the measuring window
    used = cpu_seconds(supervisor) - before
    daemon.release(uuid)
    daemon.wait_for_status(uuid, "completed")
    assert used < 0.5, f"the supervisor used {used:.2f} s of CPU in 1.5 s"
    assert daemon.stop() == 0


@pytest.mark.timeout(40)
def test_a_job_inserted_into_an_idle_daemon_starts_at_once(daemon: Daemon) -> None:
    # A 5 s poll interval: only a working wake-up (inotify / data_version) can be fast.
    daemon.configure(queues={"default": {"workers": 2, "poll_interval": "5s"}})
    daemon.start()
    procs = [psutil.Process(pid) for pid in [daemon.pid, *daemon.worker_pids()]]
    latencies, idle_cpu = [], []
    for n in range(2):
        before = cpu_seconds(procs)
        time.sleep(2.5)   # the scenario itself: the daemon has been idle for a while
        idle_cpu.append(cpu_seconds(procs) - before)
        inserted = time.time()
        uuid = daemon.insert_job("three", {"n": n})
        started = daemon.wait_for_log(event("workflow.started", workflow_uuid=uuid), timeout=10)
        latencies.append(epoch(started) - inserted)
        daemon.wait_for_status(uuid, "completed")
    print(f"\nwake-up latency after idle: {', '.join(f'{x * 1000:.1f} ms' for x in latencies)}"
          f"; CPU of the idle daemon (3 processes) per 2.5 s: "
          f"{', '.join(f'{x * 1000:.0f} ms' for x in idle_cpu)}")
    assert max(latencies) < 0.5, latencies
    assert max(idle_cpu) < 0.25, idle_cpu      # close to no CPU: under 10 % of one core


@pytest.mark.timeout(30)
def test_no_config_runs_the_demo_app_on_ewfd_db_in_the_cwd(daemon: Daemon) -> None:
    cwd = daemon.dir / "empty"
    cwd.mkdir()
    daemon.config_path = None
    daemon.db = cwd / "ewfd.db"
    daemon.log_path = daemon.stdout_path          # no config: logs go to stdout
    daemon.queues = {"default": {"workers": 2}}
    daemon.start(args=[], cwd=cwd)
    line = daemon.wait_for_log(event("supervisor.started"))
    assert line["app"] == "ewfd.examples.demo:engine"
    assert Path(line["database"]) == daemon.db
    uuid = daemon.insert_job("greet", {"name": "E2E"})
    row = daemon.wait_for_status(uuid, "completed")
    assert json.loads(row["state"])["greeting"] == "Hello, E2E!"
    for path in cwd.glob("ewfd.db*"):
        if path.name.endswith((".db", "-wal", "-shm")):
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & ~0o640 == 0, f"{path.name} has mode {oct(mode)}"
    assert daemon.stop() == 0
    assert read_json_lines(daemon.stdout_path)
