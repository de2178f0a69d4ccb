"""Tests for ewfd.systemd: real datagrams over a real AF_UNIX socket."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ewfd import systemd

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs AF_UNIX")


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    try:
        yield sock, {"NOTIFY_SOCKET": str(path)}
    finally:
        sock.close()


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode("utf-8")


def nothing_waiting(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        sock.recv(4096)
    except (TimeoutError, BlockingIOError):
        return True
    return False


def test_ready(listener: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = listener
    assert systemd.ready(env=env) is True
    assert receive(sock) == "READY=1"


def test_ready_with_status_on_one_line(listener: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = listener
    assert systemd.ready("2 queues,\n4 workers", env=env)
    assert receive(sock) == "READY=1\nSTATUS=2 queues, 4 workers"


def test_stopping(listener: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = listener
    assert systemd.stopping(env=env)
    assert receive(sock) == "STOPPING=1"
    assert systemd.stopping("draining", env=env)
    assert receive(sock) == "STOPPING=1\nSTATUS=draining"


def test_watchdog(listener: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = listener
    assert systemd.watchdog(env=env)
    assert receive(sock) == "WATCHDOG=1"


def test_reloading(listener: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = listener
    assert systemd.reloading(env=env)
    lines = receive(sock).split("\n")
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=")
    assert int(lines[1].split("=", 1)[1]) > 0


def test_status(listener: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = listener
    assert systemd.status("idle", env=env)
    assert receive(sock) == "STATUS=idle"


def test_notify_raw_message(listener: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = listener
    assert systemd.notify("READY=1\nMAINPID=1", env)
    assert receive(sock) == "READY=1\nMAINPID=1"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux")
def test_abstract_namespace() -> None:
    name = f"ewfd-test-{os.getpid()}-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        assert systemd.ready(env={"NOTIFY_SOCKET": "@" + name})
        assert receive(sock) == "READY=1"
    finally:
        sock.close()


def test_unset_returns_false(listener: tuple[socket.socket, dict[str, str]]) -> None:
    sock, _ = listener
    for env in ({}, {"NOTIFY_SOCKET": ""}):
        assert systemd.notify("READY=1", env) is False
        assert systemd.ready(env=env) is False
        assert systemd.stopping(env=env) is False
        assert systemd.watchdog(env=env) is False
        assert systemd.reloading(env=env) is False
        assert systemd.status("x", env=env) is False
    assert nothing_waiting(sock)


def test_empty_message_is_not_sent(listener: tuple[socket.socket, dict[str, str]]) -> None:
    sock, env = listener
    assert systemd.notify("", env) is False
    assert nothing_waiting(sock)


@pytest.mark.parametrize(
    "value", ["relative/path.sock", "vsock:2:1234", "/nonexistent/dir/notify.sock"]
)
def test_bad_socket_returns_false_without_raising(tmp_path: Path, value: str) -> None:
    assert systemd.ready(env={"NOTIFY_SOCKET": value}) is False


def test_nobody_listening_returns_false(tmp_path: Path) -> None:
    path = tmp_path / "gone.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.close()  # the file stays, nobody receives: ECONNREFUSED
    assert systemd.watchdog(env={"NOTIFY_SOCKET": str(path)}) is False


def test_nul_in_path_returns_false() -> None:
    assert systemd.watchdog(env={"NOTIFY_SOCKET": "/tmp/a\0b"}) is False


# --- watchdog_interval -----------------------------------------------------------------


def test_watchdog_interval_without_pid() -> None:
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "1500000"}) == 1.5


def test_watchdog_interval_for_our_pid() -> None:
    env = {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}
    assert systemd.watchdog_interval(env) == 20.0


def test_watchdog_interval_for_another_pid() -> None:
    env = {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert systemd.watchdog_interval(env) is None


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"WATCHDOG_USEC": ""},
        {"WATCHDOG_USEC": "abc"},
        {"WATCHDOG_USEC": "1.5"},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "-5"},
        {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "garbage"},
        {"WATCHDOG_PID": str(os.getpid())},
    ],
)
def test_watchdog_interval_none(env: dict[str, str]) -> None:
    assert systemd.watchdog_interval(env) is None


def test_watchdog_interval_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert systemd.watchdog_interval() == 4.0
