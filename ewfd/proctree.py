"""Process trees: whatever a worker's steps started dies with the worker.

Each forked worker leads a session (and so a process group) of its own, so
the supervisor can kill a worker together with every process its steps
started (``subprocess`` from any thread, shells, their children) with one
``killpg``. A step's child that left the group (``start_new_session=True``)
is found by walking the process table: the supervisor notes such escapees
while the worker runs and kills them with it. The supervisor is also a child
subreaper, so an orphan in its tree (a daemon a step double-forked, what a
dead worker leaves behind) is re-parented to it, not to init, and is killed
when ``ewfd run`` stops.

A session of its own also keeps the terminal's signals (Ctrl-C, Ctrl-Z, Ctrl-\\)
away from workers and their steps: only the supervisor gets them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Iterable

import psutil

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphans in our tree re-parent to us (Linux 3.4+); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def lead_own_session() -> None:
    """In a freshly forked worker: a session and process group of our own, no terminal."""
    with contextlib.suppress(OSError):
        os.setsid()


def escapees(root: int, groups: set[int]) -> dict[int, list[psutil.Process]]:
    """Descendants of ``root`` outside every process group in ``groups`` (the workers' own),
    keyed by the worker (a member of ``groups``) they descend from; 0 for none (orphans a
    dead worker left to us)."""
    found: dict[int, list[psutil.Process]] = {}
    try:
        tree = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return found
    for proc in tree:
        if proc.pid in groups:
            continue
        try:
            if os.getpgid(proc.pid) in groups:
                continue   # killpg reaches it
            found.setdefault(_worker_of(proc, root, groups), []).append(proc)
        except (OSError, psutil.Error):
            continue   # gone meanwhile
    return found


def _worker_of(proc: psutil.Process, root: int, groups: set[int]) -> int:
    pid = proc.ppid()
    while pid not in groups and pid not in (root, 0, 1):
        pid = psutil.Process(pid).ppid()
    return pid if pid in groups else 0


def kill_tree(pid: int, known: Iterable[psutil.Process] = ()) -> None:
    """SIGKILL a worker, its process group and the processes in ``known`` (escapees noted
    earlier; psutil refuses to signal a pid that was reused since)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    kill_group(pid)
    for proc in known:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def kill_group(pgid: int) -> None:
    """SIGKILL a worker's process group (the worker may be a zombie: its id then stays
    reserved, so the group cannot be someone else's)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def signal_groups(pgids: Iterable[int], signum: int) -> None:
    """Send ``signum`` (SIGSTOP, SIGCONT) to each worker's whole process group."""
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)


def wait_continued(pids: Iterable[int], timeout: float) -> None:
    """Wait (a bounded while) until none of ``pids`` reads as stopped any more."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_STOPPED:
                    break
            except psutil.Error:
                break
            time.sleep(0.005)


def next_exited() -> int:
    """The pid of a child that has exited, left unreaped so its pid (and so its process
    group id) stays reserved until we have killed the group; 0 when none has. Raises
    ChildProcessError when we have no children at all."""
    info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return 0 if info is None else info.si_pid


def reap_all(timeout: float) -> None:
    """Reap every child that exits within ``timeout`` (ones we have just killed)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def kill_sessions(sessions: set[int]) -> list[int]:
    """SIGKILL every process in one of ``sessions`` (the ids of dead workers, which led
    them); the pids killed. A session whose leader's pid is alive is skipped: that pid
    was reused, and the session is someone else's."""
    sessions = {sid for sid in sessions if sid > 1 and not _alive(sid)}
    killed: list[int] = []
    if not sessions:
        return killed
    for pid in psutil.pids():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getsid(pid) in sessions:
                psutil.Process(pid).kill()
                killed.append(pid)
    return killed


def kill_descendants(root: int) -> list[int]:
    """SIGKILL every descendant of ``root``; the pids killed."""
    try:
        tree = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return []
    killed = []
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            proc.kill()
            killed.append(proc.pid)
    return killed
