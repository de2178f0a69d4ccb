"""Block until another process writes the database, at no CPU cost while idle.

On Linux an inotify watch on the database's directory reports every write to
the ``-wal`` file, whoever made it (ewfd, ``sqlite3`` in a shell, another
program). Elsewhere, or if inotify is unavailable, :meth:`ChangeWaiter.wait`
just sleeps and the caller's cheap ``PRAGMA data_version`` check does the rest.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import sys
import threading
import time
from collections.abc import Callable

_IN_MODIFY = 0x002
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200      # the database deleted: the supervisor notices at once
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


class ChangeWaiter:
    """One inotify descriptor per process (open it after fork)."""

    def __init__(self, db_path: str) -> None:
        self._names = {os.path.basename(db_path).encode(),
                       os.path.basename(db_path).encode() + b"-wal"}
        self._fd = -1
        libc = _libc()
        if libc is None or db_path == ":memory:":
            return
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return
        directory = os.path.dirname(os.path.abspath(db_path)).encode()
        mask = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
        if libc.inotify_add_watch(fd, directory, mask) < 0:
            os.close(fd)
            return
        self._fd = fd

    @property
    def blocking(self) -> bool:
        """True when waits end on writes (inotify), False when they are plain sleeps."""
        return self._fd >= 0

    def fileno(self) -> int:
        """The descriptor to ``select`` on (-1 without inotify); call :meth:`drain` when ready."""
        return self._fd

    def drain(self) -> bool:
        """Consume pending events; True if one was about the database files."""
        return self._fd >= 0 and self._drain()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True if the database files were written meanwhile."""
        if self._fd < 0:
            time.sleep(max(0.0, timeout))
            return False
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if ready and self._drain():
                return True

    def _drain(self) -> bool:
        hit = False
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return False
        offset = 0
        while offset + _EVENT.size <= len(data):
            _wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if name in self._names:
                hit = True
        return hit

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


HOT = 0.05          # after a -wal write, look this long for its commit to become visible
HOT_POLL = 0.001    # ... this often
POLL = 0.05         # without inotify: how often a waiting thread looks


class ChangeFeed:
    """Wake-ups for every thread of a process that waits on one database connection.

    ``version`` reads the connection's ``PRAGMA data_version``, which moves on commits
    of *other* connections only; :meth:`committed` counts the commits of our own
    connection (another thread of this process enqueued, say), which it does not see.
    Each thread remembers what it has seen, so a change wakes every waiting thread once,
    and a thread is not woken by its own writes. One thread at a time blocks on inotify;
    the others wait on a condition it signals whenever it wakes, so no thread consumes
    an event another one needed.
    """

    def __init__(self, db_path: str, version: Callable[[], int]) -> None:
        self._path = db_path
        self._version = version
        self._start = version()         # what a thread that never looked has seen
        self._commits = 0
        self._cond = threading.Condition()
        self._local = threading.local()
        self._watcher: ChangeWaiter | None = None   # opened on first use: after fork
        self._watching = False
        self._hot_until = 0.0

    @property
    def watcher(self) -> ChangeWaiter:
        if self._watcher is None:
            self._watcher = ChangeWaiter(self._path)
        return self._watcher

    def committed(self) -> None:
        """Our own connection committed a change (call it after COMMIT)."""
        with self._cond:
            caught_up = getattr(self._local, "commits", 0) == self._commits
            self._commits += 1
            if caught_up:               # the writer itself is not woken by its own write
                self._local.commits = self._commits
            self._cond.notify_all()

    def wait(self, timeout: float) -> None:
        """Return when the database changed since this thread last returned from here (or
        since the store was opened), or after ``timeout`` seconds."""
        deadline = time.monotonic() + max(0.0, timeout)
        watcher = self.watcher
        while True:
            version = self._version()   # never under _cond: the store's lock comes first
            with self._cond:
                local = self._local
                if (version != getattr(local, "version", self._start)
                        or self._commits != getattr(local, "commits", 0)):
                    local.version, local.commits = version, self._commits
                    return
                now = time.monotonic()
                remaining = deadline - now
                if remaining <= 0:
                    return
                if not watcher.blocking:
                    step = min(remaining, POLL)
                elif now < self._hot_until:
                    step = min(remaining, HOT_POLL)
                else:
                    step = remaining
                if self._watching or not watcher.blocking:
                    self._cond.wait(step)   # the watching thread (or a commit) wakes us
                    continue
                self._watching = True
            try:
                hit = watcher.wait(step)
            finally:
                with self._cond:
                    self._watching = False
                    if hit:
                        self._hot_until = time.monotonic() + HOT
                    self._cond.notify_all()

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
