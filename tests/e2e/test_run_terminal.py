"""``ewfd run`` at a terminal with the log going to a file says where it goes: otherwise a
person sees nothing at all and cannot tell it started. Not when stderr is no terminal
(systemd, a pipe): nothing extra there."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import pytest
from conftest import Daemon

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(60)
def test_a_terminal_is_told_where_the_log_goes(daemon: Daemon) -> None:
    daemon.configure()
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "ewfd", "run", "--config",
                             str(daemon.config_path)], cwd=daemon.dir, env=daemon.env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 20
        while b"\n" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                seen += os.read(master, 1024)
    finally:
        proc.terminate()
        proc.wait(20)
        os.close(master)
    assert f"ewfd: logging to {daemon.log_path}".encode() in seen, seen


@pytest.mark.timeout(60)
def test_no_extra_line_when_stderr_is_not_a_terminal(daemon: Daemon) -> None:
    daemon.configure()
    daemon.start()
    assert daemon.stop() == 0
    assert b"logging to" not in daemon.stderr_path.read_bytes()
