"""The SQLite file itself: opening it by URI, reading it without write access, and
checking that the file at the path is still the one that was opened.

Three facts from SQLite's documentation shape this module:

- A file name given as a URI is percent-decoded and cut at ``?`` and ``#``, so
  every path is quoted into its URI here (a ``--db`` holding ``#``, ``?`` or
  ``%`` opens that file, not another). ``mode=rw`` never creates the file,
  which is how "no new database after start-up" is enforced by SQLite itself.
- A WAL database can be read without write access only if its ``-wal`` and
  ``-shm`` files exist, or the directory lets the reader create them, or the
  connection is ``immutable`` (https://www.sqlite.org/wal.html, "Read-Only
  Databases"). After a clean stop the last connection deletes both files, so an
  operator who may only read the directory gets "attempt to write a readonly
  database". ``immutable=1`` skips locking and the WAL: it is sound only while
  the WAL holds nothing and no writer changes the file, so it is used only then
  and every read made through it is checked afterwards (:class:`Snapshot`).
- A connection keeps the file it opened: deleted or replaced at the path
  (``rm``, ``mv backup.db ewfd.db``), it goes on with the old inode while any
  new connection opens the new file, possibly with the old ``-wal`` beside it.
  :func:`lost` tells when the path no longer names the opened file.
"""

from __future__ import annotations

import fcntl
import os
import urllib.parse
from dataclasses import dataclass

from ..errors import DatabaseInUse

FileId = tuple[int, int]        # (st_dev, st_ino)


def uri(path: str, **params: str) -> str:
    """``file:`` URI of ``path`` (made absolute), every special character escaped."""
    quoted = urllib.parse.quote(os.fsencode(os.path.abspath(path)))
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"file:{quoted}?{query}" if query else f"file:{quoted}"


def file_id(path: str) -> FileId | None:
    """The identity of the file at ``path`` now, or None when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def lost(path: str, opened: FileId) -> str | None:
    """Why the file at ``path`` is not the file opened as ``opened``, or None when it is."""
    now = file_id(path)
    if now == opened:
        return None
    if now is None:
        return (f"database file {path} was deleted while ewfd had it open (inode "
                f"{opened[1]}); ewfd never creates a new database after start-up: restore "
                "the file, or start ewfd again to begin with an empty one")
    return (f"database file {path} was replaced by another file (inode {opened[1]} -> "
            f"{now[1]}) while ewfd had it open; restore backups with ewfd stopped, or start "
            "it again to use the new file")


def journal_ids(path: str) -> tuple[FileId | None, FileId | None]:
    """Identities of the ``-wal`` and ``-shm`` files now (take them while a connection is
    open: then they are that connection's)."""
    return file_id(f"{path}-wal"), file_id(f"{path}-shm")


def set_aside(path: str, ours: tuple[FileId | None, FileId | None]) -> list[str]:
    """After the main file was deleted or replaced, move our old ``-wal`` and ``-shm`` away
    from the path: SQLite keeps them when the file it opened has moved, and the next
    connection would apply the old WAL to the new file (a corrupt database). Only files
    that are still the ones in ``ours`` are touched; returns what was moved where."""
    moved = []
    for suffix, known in zip(("-wal", "-shm"), ours, strict=True):
        name = f"{path}{suffix}"
        if known is None or file_id(name) != known:
            continue
        aside = f"{name}.lost-{known[1]}"
        try:
            os.replace(name, aside)
        except OSError:
            continue
        moved.append(f"{name} -> {aside}")
    return moved


def wal_is_empty(path: str) -> bool:
    """True when the database's ``-wal`` file is absent or empty (all content is in the
    main file)."""
    try:
        return os.stat(f"{path}-wal").st_size == 0
    except FileNotFoundError:
        return True


@dataclass(frozen=True)
class Snapshot:
    """What an immutable reader relies on: the main file as it was when opened, and a WAL
    with nothing in it. :meth:`holds` after a read says the read saw a consistent file."""

    path: str
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def take(cls, path: str) -> Snapshot:
        st = os.stat(path)
        return cls(path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def holds(self) -> bool:
        """Nothing changed the main file and no writer put content in a WAL since
        :meth:`take` (a writer creates the ``-wal`` before any checkpoint can touch the
        main file, and a checkpoint moves its mtime)."""
        try:
            now = Snapshot.take(self.path)
        except OSError:
            return False
        return now == self and wal_is_empty(self.path)


def hold_for_supervisor(path: str) -> int:
    """An open descriptor of the database file holding an exclusive ``flock`` on it, for as
    long as the supervisor runs (the kernel drops it when the process ends, however it ends).
    ``flock`` locks are apart from the POSIX locks SQLite takes on the same file, so this
    one stops nothing but a second ``ewfd run``. Close it in forked children. Raises
    :class:`DatabaseInUse` when another process holds it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DatabaseInUse(
            f"{path}: another ewfd run already serves this database (`ewfd ctl workers --db "
            f"{path}` shows it); stop that one first, or give this one another database"
        ) from None
    return fd
