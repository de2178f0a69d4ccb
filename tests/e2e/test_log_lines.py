"""Every log line is one JSON object, whatever its size and target (issue 10, F14).

Four workers fail forty steps at once with ~90 KB error texts. A write to a pipe
or a stream socket (stdout under systemd is the journal's socket) is only whole
up to PIPE_BUF (4096 bytes): longer lines from several processes interleaved,
and about half were not JSON. Lines are now at most 4096 bytes, newline
included, on every target; a long value is cut in its middle, with a marker,
and the database keeps the whole text.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import Daemon, event
from signalapp import LOUD_SIZE

pytestmark = pytest.mark.e2e

MAX_LINE = 4096
JOBS = 40


@contextlib.contextmanager
def stdout_to(daemon: Daemon, target: str) -> Iterator[None]:
    """Start the daemon with ``log_file = "-"`` and its stdout on a pipe or a stream socket,
    copied by a thread into ``daemon.log_path``; or with ``log_file`` on a plain file."""
    queues = {"default": {"workers": 4}}
    if target == "file":
        daemon.configure({"app": "signalapp:engine"}, queues=queues)
        daemon.start()
        yield
        return
    daemon.configure({"app": "signalapp:engine", "log_file": "-"}, queues=queues)
    if target == "pipe":
        read_fd, write_fd = os.pipe()
    else:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        read_fd, write_fd = ours.detach(), theirs.detach()

    def copy() -> None:
        with open(daemon.log_path, "ab", buffering=0) as out:
            while data := os.read(read_fd, 65536):
                out.write(data)

    copier = threading.Thread(target=copy, daemon=True)
    copier.start()
    with open(daemon.stderr_path, "ab") as err:
        daemon.proc = subprocess.Popen(
            [sys.executable, "-m", "ewfd", "run", "--config", str(daemon.config_path)],
            cwd=daemon.dir, env=daemon.env(), stdin=subprocess.DEVNULL, stdout=write_fd,
            stderr=err, start_new_session=True)
    os.close(write_fd)
    with contextlib.suppress(psutil.Error):
        daemon.registry.append(psutil.Process(daemon.proc.pid))
    try:
        daemon.wait_for_log(event("worker.started"), count=4)
        yield
    finally:
        if daemon.alive():
            daemon.stop()
        copier.join(10)
        os.close(read_fd)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("target", ["pipe", "socket", "file"])
def test_long_lines_from_four_workers_stay_whole(daemon: Daemon, target: str) -> None:
    with stdout_to(daemon, target):
        uuids = [daemon.insert_job("loud") for _ in range(JOBS)]
        for uuid in uuids:
            daemon.wait_for_status(uuid, "failed", timeout=60)
        daemon.wait_for_log(event("workflow.failed"), count=JOBS, timeout=30)
        assert daemon.stop() == 0

    raw = Path(daemon.log_path).read_bytes().split(b"\n")[:-1]
    too_long = [len(line) + 1 for line in raw if len(line) + 1 > MAX_LINE]
    assert not too_long, f"{len(too_long)} lines over {MAX_LINE} bytes: {too_long[:5]}"
    lines = daemon.logs()   # fails on any line that is not one JSON object
    failed = [line for line in lines if line["event"] == "step.failed"]
    assert sorted(line["workflow_uuid"] for line in failed) == sorted(uuids)
    for line in failed:   # cut in the middle: both ends and the size of the cut are kept
        error = line["error"]
        assert error.startswith(f"{line['workflow_uuid']} begins é")
        assert error.endswith("é ends") and "chars cut]" in error, error[:200]

    stored = daemon.history(uuids[0])[0]["error"]   # the database keeps the whole text
    assert stored.startswith(f"{uuids[0]} begins") and len(stored.encode()) > LOUD_SIZE - 10
    assert json.loads(raw[-1])["event"] == "supervisor.stopped"
