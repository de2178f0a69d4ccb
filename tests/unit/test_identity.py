"""Owner identities do not depend on the wall clock (issue 10, E10).

An owner is ``host:pid:start``; ``start`` must name the process's start in a way a
clock step cannot move. psutil's ``create_time()`` is boot time (from the wall clock,
which the kernel moves with every step) plus start ticks: after a step, every live
owner would read as dead and its workflows would be taken back while they run.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import psutil
import pytest

from ewfd import identity


@pytest.fixture
def stepped_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """What psutil reports after the wall clock was stepped forward an hour."""
    boot, create = psutil.boot_time, psutil.Process.create_time
    monkeypatch.setattr(psutil, "boot_time", lambda: boot() + 3600)
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: create(self) + 3600)
    monkeypatch.setattr(time, "time", lambda real=time.time: real() + 3600)


def test_this_process_is_alive() -> None:
    assert not identity.is_dead(identity.current())


def test_a_live_owner_stays_alive_when_the_clock_is_stepped(
        request: pytest.FixtureRequest) -> None:
    owner = identity.current()
    request.getfixturevalue("stepped_clock")
    assert identity.current() == owner
    assert not identity.is_dead(owner)


def test_a_child_is_alive_until_it_exits() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        owner = identity.of(child.pid)
        assert not identity.is_dead(owner)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
    assert identity.is_dead(owner)


def test_an_owner_from_an_earlier_boot_is_dead() -> None:
    host, pid, start = identity.current().split(":")
    ticks = start.split("@")[0]
    assert identity.is_dead(f"{host}:{pid}:{ticks}@00000000")


def test_a_reused_pid_is_dead() -> None:
    host, pid, start = identity.current().split(":")
    ticks, _, boot = start.partition("@")
    assert identity.is_dead(f"{host}:{pid}:{int(ticks) + 1}@{boot}")


def test_owners_on_other_hosts_are_never_declared_dead_here() -> None:
    assert not identity.is_dead(f"not-{socket.gethostname()}:1:1@00000000")
    assert identity.is_dead(None) and identity.is_dead("")


def test_an_owner_written_before_the_upgrade_is_still_recognised() -> None:
    """Rows leased by an older ewfd name the owner by psutil's create_time (x100)."""
    legacy = f"{socket.gethostname()}:{psutil.Process().pid}:" \
             f"{int(psutil.Process().create_time() * 100)}"
    assert not identity.is_dead(legacy)
