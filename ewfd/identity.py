"""Who holds a lease: ``host:pid:start-time``, an identity that survives pid reuse."""

from __future__ import annotations

import os
import socket

import psutil


def current() -> str:
    """The identity of this process (compute it after fork: the pid changes)."""
    return of(os.getpid())


def of(pid: int) -> str:
    """The identity of a live process on this host (the supervisor names its workers so)."""
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def _start_time(pid: int) -> int:
    try:
        return int(psutil.Process(pid).create_time() * 100)
    except psutil.Error:
        return 0


def is_dead(owner: str | None) -> bool:
    """True when ``owner`` names a process on this host that no longer exists.

    Owners on other hosts are never declared dead here: their leases expire instead.
    """
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname():
        return False
    try:
        pid = int(pid_text)
    except ValueError:
        return True
    try:
        # A zombie is dead: its workflows must not wait for whoever reaps it (an orphaned
        # worker's zombie lingers until init gets to it).
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        pass
    return str(_start_time(pid)) != started
