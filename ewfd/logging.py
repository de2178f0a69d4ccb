"""structlog set-up for the daemon: one JSON object per line, one ``write`` per line.

The library logs through :mod:`ewfd.liblog` (structlog once it is configured); this
module is used by ``ewfd run`` alone, so an embedding program keeps its own logging set-up.
Each line is written with a single ``os.write`` on a file opened ``O_APPEND``
(or stdout), and is at most PIPE_BUF bytes (:mod:`ewfd.loglimit`), so lines from
the supervisor and its workers never interleave, on a pipe or socket either.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import structlog

from . import loglimit
from .codec import TEXT_ERRORS

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class LineWriter:
    """Where log lines go: stdout (``"-"``) or a file, reopened on SIGUSR1 (logrotate)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.fd = -1
        self._stdout = os.dup(sys.stdout.fileno())   # for a HUP that switches to "-" later
        self._open()   # raises OSError: ``ewfd run`` reports it as a config error

    def _open(self) -> None:
        if self.target == "-":
            if self.fd < 0:   # our own copy: workers point fd 1 at a capture pipe
                self.fd = os.dup(sys.stdout.fileno())
            return
        fd = os.open(self.target, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        old, self.fd = self.fd, fd
        if old >= 0:
            os.close(old)

    def reopen(self) -> bool:
        """Reopen the file at ``target`` (after logrotate moved it); False if that failed.

        Never raises: it runs from a signal handler, in the middle of whatever the process
        was doing (a worker's step). A path that cannot be opened (a directory now, a full
        disk, a permission) is logged as ``log.reopen_failed`` and the lines go on to the
        file already open, so nothing is lost and the next SIGUSR1 tries again.
        """
        try:
            self._open()
        except OSError as exc:
            structlog.get_logger("ewfd").error("log.reopen_failed", path=self.target,
                                               error=exc.strerror or str(exc))
            return False
        return True

    def switch(self, target: str) -> None:
        """Write to ``target`` from now on (a reload changed ``log_file``). Raises OSError,
        and keeps writing where it did, when the new target cannot be opened."""
        if target == self.target:
            return
        fd = os.dup(self._stdout) if target == "-" else os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        old, self.fd, self.target = self.fd, fd, target
        if old >= 0:
            os.close(old)

    def write_line(self, line: str) -> None:
        data = (line + "\n").encode("utf-8", TEXT_ERRORS)   # inside JSON: an exact escape
        try:
            while data:
                written = os.write(self.fd, data)
                data = data[written:]
        except OSError:
            pass   # a full disk or a closed pipe must not kill the worker mid-step


class _Logger:
    def __init__(self, writer: LineWriter) -> None:
        self._writer = writer

    def msg(self, message: str) -> None:
        self._writer.write_line(message)

    debug = info = warning = warn = error = critical = exception = log = msg


_encoder = json.JSONEncoder(default=str, ensure_ascii=False, separators=(",", ":"))
_second = -1
_second_text = ""
_KEEP_NONE = frozenset(("queue", "error"))


def _timestamp() -> str:
    """ISO 8601 UTC with microseconds; the date part is formatted once per second."""
    global _second, _second_text
    now = time.time()
    whole = int(now)
    if whole != _second:
        _second, _second_text = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{_second_text}.{int((now - whole) * 1_000_000):06d}Z"


def render(_: Any, method: str, event: MutableMapping[str, Any]) -> str:
    """Level, timestamp, pid and JSON in one pass: logging is on the hot path of every step."""
    if "exc_info" in event:
        event = structlog.processors.format_exc_info(_, method, event)
    if None in event.values():
        for key in [k for k, v in event.items() if v is None and k not in _KEEP_NONE]:
            del event[key]
    event["level"] = "warning" if method == "warn" else method
    event["timestamp"] = _timestamp()
    event["pid"] = os.getpid()
    return loglimit.fit(event, _encoder.encode(event), _encoder.encode)


def configure(writer: LineWriter, level: str = "info") -> None:
    """Configure structlog globally for this process (the daemon and its workers)."""
    structlog.configure(
        processors=[render],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, 20)),
        logger_factory=lambda *args: _Logger(writer),
        cache_logger_on_first_use=True,
    )
