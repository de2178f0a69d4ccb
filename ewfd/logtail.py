"""Reading the daemon's JSON log file for ``ewfd ctl tail``: the last lines, then follow.

The file is opened once: the last lines are read backwards from its end and
following starts at exactly that offset, so no line is lost or shown twice in
between. Following survives logrotate (a new file at the path: rename or
``copytruncate``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import IO, Any

from .logging import LEVELS

_BLOCK = 64 * 1024
_RANK = {**LEVELS, "critical": 50}


@dataclass(frozen=True)
class LogLine:
    """One line of the log; ``record`` is None when the line is not a JSON object."""

    text: str
    record: dict[str, Any] | None


def parse(raw: bytes) -> LogLine:
    text = raw.decode("utf-8", "replace").rstrip("\r")
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    return LogLine(text, record if isinstance(record, dict) else None)


@dataclass(frozen=True)
class LogFilter:
    """What ``tail`` keeps: a workflow (uuid or its prefix), a queue, a minimum level."""

    workflow: str | None = None
    queue: str | None = None
    level: str | None = None

    def __call__(self, line: LogLine) -> bool:
        rec = line.record
        if rec is None:     # cannot tell whose it is: kept unless filtering by who
            return self.workflow is None and self.queue is None
        if self.workflow is not None and not str(rec.get("workflow_uuid") or "").startswith(
                self.workflow):
            return False
        if self.queue is not None and rec.get("queue") != self.queue:
            return False
        if self.level is not None:
            return _RANK.get(str(rec.get("level", "")).lower(), 20) >= _RANK[self.level]
        return True


def tail(path: str, *, lines: int = 10, follow: bool = False,
         keep: Callable[[LogLine], bool] = LogFilter(),
         poll: float = 0.2) -> Generator[LogLine, None, None]:
    """The last ``lines`` kept lines of ``path``, oldest first; then, with ``follow``, every
    new kept line as it is written (until the consumer stops iterating)."""
    fh = open(path, "rb")  # noqa: SIM115 - handed over to _follow, closed in finally
    try:
        end = _complete_end(fh, fh.seek(0, os.SEEK_END))
        found: list[LogLine] = []
        if lines > 0:
            for raw in _backwards(fh, end):
                line = parse(raw)
                if keep(line):
                    found.append(line)
                    if len(found) == lines:
                        break
        yield from reversed(found)
        if follow:
            yield from _follow(fh, path, end, keep, poll)
    finally:
        fh.close()


def _complete_end(fh: IO[bytes], end: int) -> int:
    """The offset just past the last newline before ``end`` (a half-written line waits)."""
    pos = end
    while pos > 0:
        size = min(_BLOCK, pos)
        fh.seek(pos - size)
        index = fh.read(size).rfind(b"\n")
        if index >= 0:
            return pos - size + index + 1
        pos -= size
    return 0


def _backwards(fh: IO[bytes], end: int) -> Iterator[bytes]:
    """Non-empty lines before ``end``, last first."""
    pos, rest = end, b""
    while pos > 0:
        size = min(_BLOCK, pos)
        pos -= size
        fh.seek(pos)
        parts = (fh.read(size) + rest).split(b"\n")
        rest = parts.pop(0)
        yield from (p for p in reversed(parts) if p.strip())
    if rest.strip():
        yield rest


def _follow(fh: IO[bytes], path: str, pos: int, keep: Callable[[LogLine], bool],
            poll: float) -> Iterator[LogLine]:
    fh.seek(pos)
    buf = b""
    try:
        while True:
            chunk = fh.read(_BLOCK)
            if chunk:
                *complete, buf = (buf + chunk).split(b"\n")
                for raw in complete:
                    if raw.strip():
                        line = parse(raw)
                        if keep(line):
                            yield line
                continue
            try:
                current = os.stat(path)
            except FileNotFoundError:   # rotated, the new file not created yet
                time.sleep(poll)
                continue
            if current.st_ino != os.fstat(fh.fileno()).st_ino:
                try:
                    new = open(path, "rb")  # noqa: SIM115 - closed on the next rotation
                except FileNotFoundError:
                    time.sleep(poll)
                    continue
                fh.close()
                fh, buf = new, b""
            elif current.st_size < fh.tell():   # truncated in place (copytruncate)
                fh.seek(0)
                buf = b""
            else:
                time.sleep(poll)
    finally:
        fh.close()   # the file open now, which may not be the one we were given
