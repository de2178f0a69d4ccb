"""Block until another process writes the database, at no CPU cost while idle.

On Linux an inotify watch on the database's directory reports every write to
the database and its ``-wal`` file, whoever made it (ewfd, ``sqlite3`` in a
shell, another program). Elsewhere, or if inotify is unavailable,
:meth:`ChangeWaiter.wait` just sleeps and the caller's cheap ``PRAGMA
data_version`` check does the rest.

An event is a hint, not a commit: SQLite writes a transaction's frames to
``-wal`` *before* it publishes the commit in the shared-memory wal-index, which
inotify cannot see. The store turns a hint into a fact by waiting for the
writer's lock (``SQLiteStore.settle``), never by re-reading for a while.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import sys
import time
from dataclasses import dataclass

_IN_MODIFY = 0x002
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200      # the database deleted: the supervisor notices at once
_IN_Q_OVERFLOW = 0x4000
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
    """One inotify descriptor (open it after fork; one per waiting thread: a thread that
    reads an event consumes it for every other reader of the descriptor)."""

    def __init__(self, db_path: str) -> None:
        # SQLite puts -wal beside the file a symlink points to: watch where it really is.
        real = os.path.realpath(db_path) if db_path != ":memory:" else db_path
        self._names = {os.path.basename(real).encode(), os.path.basename(real).encode() + b"-wal"}
        self._fd = -1
        self._pid = os.getpid()
        libc = _libc()
        if libc is None or db_path == ":memory:":
            return
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return
        directory = os.path.dirname(real).encode()
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
        """Consume every pending event; True if one was about the database files."""
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
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return hit
            if not data:
                return hit
            offset = 0
            while offset + _EVENT.size <= len(data):
                _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                # An overflowed queue dropped events: one of them may have been ours.
                if name in self._names or mask & _IN_Q_OVERFLOW:
                    hit = True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        # The thread that waited on it is gone. Not in a forked child: it may have closed
        # this descriptor number already and reused it for another file.
        if os.getpid() == self._pid:
            self.close()


@dataclass
class Seen:
    """What one thread has seen of the database: each waiting thread keeps its own, or one
    thread's look would hide a change from the others."""

    version: int                       # PRAGMA data_version (commits of other connections)
    commits: int                       # commits made through this store by any thread
    waiter: ChangeWaiter | None = None
