"""``ewfd run --check``: would ``ewfd run`` start? Like ``nginx -t``, it tries what the
daemon needs before it forks (the config, the log file, the database, the app) without
writing anything, and says what it found."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..config import Config, Overrides
from ..engine import Engine
from ..errors import StoreError
from ..store.sqlite import SQLiteStore

_FLAGS = {"app": "--app", "database": "--db", "log_file": "--log-file"}
_SHOWN_TEMPLATES = 5


class CheckFailed(Exception):
    """What would stop ``ewfd run``, as one line naming the key or flag."""


def where(config: Config, overrides: Overrides, key: str) -> str:
    """The flag or the config key a value came from, for error messages."""
    if key in _FLAGS and getattr(overrides, key) is not None:
        return _FLAGS[key]
    return f"config: {config.path or '(default)'}: ewfd.{key}"


def files(config: Config, overrides: Overrides) -> list[str]:
    """The problems with the log file and the database, as ``ewfd run`` would meet them."""
    problems = []
    if config.log_file != "-":
        why = _cannot_write(Path(config.log_file))
        if why:
            problems.append(f"{where(config, overrides, 'log_file')}: cannot open "
                            f"{config.log_file}: {why}")
    why = _database_problem(config.database)
    if why:
        problems.append(f"{where(config, overrides, 'database')}: {why}")
    return problems


def _cannot_write(path: Path) -> str | None:
    """Why this user could not open ``path`` to append (creating it), or None."""
    if path.is_dir():
        return os.strerror(errno.EISDIR)
    if path.exists():
        return None if os.access(path, os.W_OK) else os.strerror(errno.EACCES)
    if not path.parent.is_dir():
        return os.strerror(errno.ENOENT)
    return None if os.access(path.parent, os.W_OK | os.X_OK) else os.strerror(errno.EACCES)


def _database_problem(path: Path) -> str | None:
    if not path.exists():
        why = _cannot_write(path)
        return None if why is None else f"cannot create {path}: {why}"
    if path.is_dir():
        return f"{path} is a directory, expected a database file"
    if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
        return (f"{path}: this user cannot write it and its directory (SQLite writes the -wal "
                "and -shm files beside it)")
    if path.stat().st_size == 0:
        return None
    try:
        SQLiteStore(path, readonly=True).close()
    except StoreError as exc:
        if "no ewfd schema" in str(exc):   # another program's database: ewfd adds its tables
            return None
        return str(exc)
    return None


def summary(config: Config, overrides: Overrides, engine: Engine) -> str:
    """What ``ewfd run`` would run, for people."""
    names = sorted(engine.templates)
    shown = ", ".join(names[:_SHOWN_TEMPLATES]) + (", ..." if len(names) > _SHOWN_TEMPLATES
                                                   else "")
    templates = f"{len(names)} template{'' if len(names) == 1 else 's'}" + (
        f": {shown}" if names else "")
    if config.path is None:
        source = "command line" if overrides else "no config file: the built-in demo set-up"
    else:
        source = f"{config.path} (with flags)" if overrides else str(config.path)
    database = ("exists" if config.database.exists() and config.database.stat().st_size
                else "created at the first start")
    queues = ", ".join(f"{q.name} ({q.workers} worker{'' if q.workers == 1 else 's'})"
                       for q in config.queues.values())
    log = "stdout" if config.log_file == "-" else config.log_file
    rows = [("app", f"{config.app} ({templates})"),
            ("database", f"{config.database} ({database})"),
            ("queues", queues), ("log", f"{log}, level {config.log_level}")]
    return "\n".join([f"ewfd: {source}: ok", *(f"  {k:<9} {v}" for k, v in rows)])
