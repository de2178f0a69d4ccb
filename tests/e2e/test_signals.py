"""TERM, HUP, USR1 and sd_notify: the daemon as systemd and logrotate drive it."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Daemon, event, read_json_lines, wait_until

pytestmark = pytest.mark.e2e


def lease_renewed(daemon: Daemon, uuid: str, held: dict[str, Any], beyond: float) -> bool:
    """True once the lease ``held`` runs past ``beyond``; fails if it was taken away."""
    row = daemon.row(uuid)
    assert (row["status"], row["token"], row["lease_owner"]) == \
        ("running", held["token"], held["lease_owner"]), f"the lease was taken away: {row}"
    return bool(row["lease_expires"] > beyond)


@pytest.mark.timeout(40)
def test_term_during_a_long_step_lets_it_finish_and_loses_nothing(daemon: Daemon) -> None:
    daemon.configure({"shutdown_timeout": "10s"},
                     queues={"default": {"workers": 2, "lease": "2s"}})
    daemon.start()
    uuid = daemon.insert_job("blocking", {"n": 1})
    daemon.wait_started(uuid)
    held = daemon.row(uuid)
    began, termed = time.monotonic(), time.time()
    daemon.send_signal(signal.SIGTERM)
    daemon.wait_for_log(event("supervisor.stopping"))
    # The step outlives its lease while the daemon waits for it: the lease is kept alive
    # (another process's reclaim of expired leases must not take the workflow meanwhile).
    wait_until(lambda: lease_renewed(daemon, uuid, held, termed + 3), 8, "a lease renewal")
    assert daemon.alive()            # waiting for the running step
    daemon.release(uuid)             # the step now ends, well within shutdown_timeout
    assert daemon.proc is not None and daemon.proc.wait(15) == 0
    assert time.monotonic() - began < 10
    row = daemon.row(uuid)
    assert row["status"] in ("pending", "completed"), row
    if row["status"] == "pending":   # handed back at the step boundary, not as a crash
        assert (row["current_step"], row["crashes"], row["lease_owner"]) == (2, 0, None)
    assert not daemon.events("worker.killed")

    daemon.start()
    done = daemon.wait_for_status(uuid, "completed")
    assert json.loads(done["state"])["out_three"] == "three(1)"
    assert daemon.step_counts(uuid) == {"one": 1, "block": 1, "three": 1}
    assert daemon.stop() == 0


@pytest.mark.timeout(40)
def test_term_with_a_step_outlasting_shutdown_timeout_kills_it_without_a_crash(
        daemon: Daemon) -> None:
    daemon.configure({"shutdown_timeout": "1s"})
    daemon.start()
    uuid = daemon.insert_job("blocking", {"n": 2})
    stuck = daemon.wait_started(uuid)
    began = time.monotonic()
    assert daemon.stop(timeout=15) == 0
    elapsed = time.monotonic() - began
    assert 1 <= elapsed < 6, elapsed
    killed = daemon.events("worker.killed")
    assert [k["worker_pid"] for k in killed] == [stuck] and killed[0]["reason"] == \
        "shutdown_timeout"
    row = daemon.row(uuid)
    assert (row["status"], row["current_step"], row["crashes"]) == ("pending", 1, 0), row
    assert [h["outcome"] for h in daemon.history(uuid)] == ["completed", "interrupted"]

    daemon.release(uuid)
    daemon.start()
    row = daemon.wait_for_status(uuid, "completed")
    assert daemon.step_counts(uuid) == {"one": 1, "block": 2, "three": 1}
    assert daemon.stop() == 0


@pytest.mark.timeout(40)
def test_hup_changes_the_worker_count_and_loses_nothing(daemon: Daemon) -> None:
    daemon.configure(queues={"default": {"workers": 1, "lease": "2s"}})
    daemon.start()
    busy = daemon.insert_job("blocking", {"n": 1})
    old = daemon.wait_started(busy)
    assert daemon.worker_pids() == [old]
    held = daemon.row(busy)

    daemon.configure(queues={"default": {"workers": 3, "lease": "2s"}})
    daemon.send_signal(signal.SIGHUP)
    reloaded = time.time()
    daemon.wait_for_log(event("supervisor.reloaded"))
    daemon.wait_for_log(event("worker.started"), count=1 + 3)   # 3 new ones at once
    others = [daemon.insert_job("three", {"n": n}) for n in range(6)]
    for uuid in others:   # the new workers run them while the old one finishes its step
        daemon.wait_for_status(uuid, "completed")
    # The retiring worker's step outlives its lease: the lease must be kept alive meanwhile,
    # or a new worker would run the same step at the same time.
    wait_until(lambda: lease_renewed(daemon, busy, held, reloaded + 4), 15,
               "the retiring worker's lease to be renewed")
    daemon.release(busy)
    daemon.wait_for_status(busy, "completed")
    pids = daemon.wait_for_workers(3)
    assert old not in pids
    assert daemon.wait_for_log(event("worker.exited", worker_pid=old))["exit_code"] == 0
    assert daemon.step_counts(busy) == {"one": 1, "block": 1, "three": 1}
    assert [h["outcome"] for h in daemon.history(busy)] == ["completed"] * 3
    assert not daemon.events("lease.lost")
    assert {pid for _, _, pid, _ in daemon.effects() if pid != old} <= set(pids)
    assert daemon.stop() == 0


@contextlib.contextmanager
def notify_socket(path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        sock.settimeout(0.2)
        yield sock
    finally:
        sock.close()


def receive_until(sock: socket.socket, wanted: str, timeout: float) -> list[str]:
    got: list[str] = []

    def check() -> bool:
        with contextlib.suppress(TimeoutError):
            got.append(sock.recv(4096).decode())
        return any(wanted in message.splitlines() for message in got)

    wait_until(check, timeout, f"{wanted} on NOTIFY_SOCKET (got {got})")
    return got


@pytest.mark.timeout(30)
def test_ready_and_stopping_arrive_on_notify_socket(daemon: Daemon) -> None:
    with notify_socket(daemon.dir / "notify.sock") as sock:
        daemon.extra_env["NOTIFY_SOCKET"] = str(daemon.dir / "notify.sock")
        daemon.extra_env["WATCHDOG_USEC"] = "1000000"
        daemon.start()
        got = receive_until(sock, "READY=1", 10)
        got += receive_until(sock, "WATCHDOG=1", 10)    # every half of WatchdogSec
        daemon.send_signal(signal.SIGTERM)
        receive_until(sock, "STOPPING=1", 10)
        assert daemon.stop() == 0


@pytest.mark.timeout(30)
def test_usr1_reopens_the_log_file(daemon: Daemon) -> None:
    daemon.start()
    rotated = daemon.log_path.with_name("ewfd.log.1")
    daemon.log_path.rename(rotated)
    daemon.send_signal(signal.SIGUSR1)
    daemon.wait_for_log(event("supervisor.log_reopened"))   # in a new file at the old path
    uuid = daemon.insert_job("three", {"n": 1})
    daemon.wait_for_status(uuid, "completed")
    daemon.wait_for_log(event("workflow.completed", workflow_uuid=uuid))   # workers reopened too
    assert daemon.stop() == 0
    old = read_json_lines(rotated)
    assert [line["event"] for line in old].count("worker.started") == 2
    assert not [line for line in old if line.get("workflow_uuid") == uuid]
    assert daemon.events("supervisor.stopped")


@pytest.mark.timeout(30)
def test_a_second_term_stops_at_once_and_still_loses_nothing(daemon: Daemon) -> None:
    daemon.configure({"shutdown_timeout": "60s"})
    daemon.start()
    uuid = daemon.insert_job("blocking", {"n": 1})
    stuck = daemon.wait_started(uuid)
    daemon.send_signal(signal.SIGTERM)
    daemon.wait_for_log(event("supervisor.stopping"))
    began = time.monotonic()
    assert daemon.stop(timeout=15) == 0          # the second TERM
    assert time.monotonic() - began < 10
    assert daemon.events("supervisor.stopping", forced=True)
    assert stuck in [k["worker_pid"] for k in daemon.events("worker.killed")]
    row = daemon.row(uuid)
    assert (row["status"], row["current_step"], row["crashes"]) == ("pending", 1, 0), row


@pytest.mark.timeout(30)
def test_hup_with_a_broken_config_keeps_the_daemon_running(daemon: Daemon) -> None:
    daemon.start()
    workers = daemon.worker_pids()
    assert daemon.config_path is not None
    daemon.config_path.write_text(daemon.config_path.read_text() + "bogus_key = 1\n")
    daemon.send_signal(signal.SIGHUP)
    failed = daemon.wait_for_log(event("supervisor.reload_failed"))
    assert "bogus_key" in failed["error"]
    uuid = daemon.insert_job("three", {"n": 1})
    daemon.wait_for_status(uuid, "completed")
    assert daemon.worker_pids() == workers      # the running workers were kept
    assert daemon.stop() == 0
