"""Worker pools: recycling after max_tasks_per_worker, queues created and closed at run time."""

from __future__ import annotations

import json
import time
from collections import Counter

import e2eapp
import psutil
import pytest
from conftest import Daemon, event, wait_until

from ewfd import Engine, SQLiteStore

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(40)
def test_a_worker_is_recycled_after_max_tasks_per_worker(daemon: Daemon) -> None:
    daemon.configure(queues={"default": {"workers": 1, "max_tasks_per_worker": 2}})
    daemon.start()
    first = daemon.worker_pids()
    uuids = [daemon.insert_job("three", {"n": n}) for n in range(5)]
    for uuid in uuids:
        daemon.wait_for_status(uuid, "completed")
    runs = Counter(pid for _, step, pid, _ in daemon.effects() if step == "one")
    assert sum(runs.values()) == 5
    assert max(runs.values()) <= 2 and len(runs) >= 3, runs
    assert first[0] in runs
    recycled = daemon.wait_for_log(event("worker.recycled"), count=2)
    assert recycled["reason"] == "max_tasks_per_worker"
    assert all(e["exit_code"] == 10 for e in daemon.events("worker.exited"))
    assert not daemon.events("worker.restarted")      # a recycle is not a crash
    daemon.wait_for_workers(1)
    assert daemon.stop() == 0


@pytest.mark.timeout(30)
def test_a_worker_above_max_memory_is_recycled_and_work_goes_on(daemon: Daemon) -> None:
    daemon.configure(queues={"default": {"workers": 1, "max_memory": "1KiB"}})
    daemon.start()
    recycled = daemon.wait_for_log(event("worker.recycled"))
    assert recycled["reason"] == "max_memory"
    assert daemon.events("worker.recycling")[0]["rss_bytes"] > 1024
    uuid = daemon.insert_job("three", {"n": 1})
    daemon.wait_for_status(uuid, "completed")
    assert not daemon.events("worker.restarted")
    assert daemon.stop() == 0


@pytest.mark.timeout(40)
def test_a_queue_created_at_run_time_gets_workers_and_close_queue_stops_them(
        daemon: Daemon) -> None:
    daemon.start()
    engine = e2eapp.register(Engine(store=SQLiteStore(daemon.db)))
    try:
        began = time.monotonic()
        engine.create_queue("extra", workers=1)
        started = daemon.wait_for_log(event("worker.started", queue="extra"), timeout=10)
        latency = time.monotonic() - began
        print(f"\nworker for a queue created at run time started after {latency:.2f} s")
        assert latency < 5, latency
        worker = started["pid"]
        uuids = []
        for n in range(3):
            wf = engine.new_workflow("three", queue="extra", state={"n": n})
            engine.run(wf)
            uuids.append(wf.uuid)
        uuids.append(daemon.insert_job("three", {"n": 3}, queue="extra"))
        for uuid in uuids:
            daemon.wait_for_status(uuid, "completed")
        assert {pid for uuid in uuids for _, _, pid, _ in daemon.effects(uuid)} == {worker}

        proc = psutil.Process(worker)
        engine.close_queue("extra")
        exited = daemon.wait_for_log(event("worker.exited", worker_pid=worker), timeout=10)
        assert exited["exit_code"] == 0
        wait_until(lambda: not proc.is_running(), 5, "the extra worker to be reaped")
        assert len(daemon.worker_pids()) == 2      # the default queue's workers stay
        late = daemon.insert_job("three", {"n": 4}, queue="extra")
        row = daemon.wait_for_status(late, "failed", timeout=10)
        assert "unknown queue" in row["error"]
    finally:
        engine.close()
    assert daemon.stop() == 0


@pytest.mark.timeout(60)
def test_an_auto_delete_queue_closes_when_idle_and_empty(daemon: Daemon) -> None:
    daemon.start()
    engine = e2eapp.register(Engine(store=SQLiteStore(daemon.db)))
    try:
        engine.create_queue("temp", workers=1, auto_delete=True, delete_after=1.0)
        started = daemon.wait_for_log(event("worker.started", queue="temp"), timeout=10)
        wf = engine.new_workflow("three", queue="temp", state={"n": 1})
        engine.run(wf)
        daemon.wait_for_status(wf.uuid, "completed")
        daemon.wait_for_log(event("queue.auto_deleted", queue="temp"), timeout=10)
        assert "temp" not in {q.name for q in engine.store.load_queues()}
        daemon.wait_for_log(event("worker.exited", worker_pid=started["pid"]), timeout=10)
    finally:
        engine.close()
    assert daemon.stop() == 0


@pytest.mark.timeout(60)
def test_a_long_retry_wait_hands_the_workflow_back_and_frees_the_worker(daemon: Daemon) -> None:
    daemon.configure(queues={"default": {"workers": 1, "poll_interval": "100ms"}})
    daemon.start()
    patient = daemon.insert_job("patient", {})
    daemon.wait_for_log(event("step.retrying", workflow_uuid=patient), timeout=10)
    row = daemon.wait_for_status(patient, "pending")    # back in the queue, due in 2 s
    assert row["current_step"] == 0
    quick = daemon.insert_job("three", {"n": 1})        # the only worker is free meanwhile
    daemon.wait_for_status(quick, "completed", timeout=10)
    assert daemon.row(patient)["status"] == "pending"
    done = daemon.wait_for_status(patient, "completed", timeout=15)
    assert json.loads(done["state"])["flaky"] == 2
    outcomes = [(h["attempt"], h["outcome"]) for h in daemon.history(patient)]
    assert outcomes == [(1, "failed"), (2, "completed")]
    assert daemon.stop() == 0
