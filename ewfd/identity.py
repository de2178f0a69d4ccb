"""Who holds a lease: ``host:pid:start``, an identity that survives pid reuse and clock steps.

``start`` is the process's start time as the kernel counts it, in clock ticks since
boot (``/proc/<pid>/stat``), with the boot id: neither moves when the wall clock is
stepped, so a live owner never reads as dead (psutil's ``create_time()`` adds the
boot time, which the kernel derives from the wall clock, and would). The boot id
tells a process of an earlier boot that had the same pid and ticks. Where there is
no ``/proc`` (not Linux), psutil's ``create_time()`` is the fallback.
"""

from __future__ import annotations

import os
import socket

import psutil

from .clock import boot_id


def current() -> str:
    """The identity of this process (compute it after fork: the pid changes)."""
    return of(os.getpid())


def of(pid: int) -> str:
    """The identity of a live process on this host (the supervisor names its workers so)."""
    return f"{socket.gethostname()}:{pid}:{_start(pid)}"


def _start(pid: int) -> str:
    ticks = _start_ticks(pid)
    if ticks is None:
        return str(_legacy_start(pid))
    return f"{ticks}@{boot_id()[:8]}"


def _start_ticks(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat``: start time in clock ticks since boot."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        # the command name (field 2) may hold spaces and parentheses: split after the last ")"
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _legacy_start(pid: int) -> int:
    """psutil's create_time (wall-clock based), as owners were named before ticks."""
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
    if "@" not in started:   # named by an ewfd from before ticks (an upgrade in flight)
        return str(_legacy_start(pid)) != started
    return _start(pid) != started
