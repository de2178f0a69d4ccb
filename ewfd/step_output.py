"""What a step prints, tied to the step that printed it.

A daemon worker's stdout and stderr are one pipe, read by the supervisor, which logs each
line as ``worker.output``. Which workflow and step a line belongs to cannot be read off
the scoreboard when the line arrives: a line written just before a step ends is often read
after the next one began. So the worker writes the context into the pipe itself, in band:
at each boundary (a workflow claimed, a step attempt starting, the worker going idle) it
flushes what the step left in Python's and C's buffers and writes a marker line. The pipe
keeps order, so every byte before a marker belongs to the context before it, whoever
wrote it (the step, a thread, a child process sharing the pipe). The supervisor splits
the stream on markers (:class:`OutputReader`). A marker is a few bytes (a workflow's uuid
and name once, then each step's name), a write of about a microsecond; the supervisor
reads them in batches, never woken for each.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
from typing import Any, NamedTuple

#: Starts every marker: a NUL, which text output does not contain.
MARK = b"\x00ewfd\x1f"
_SEP = "\x1f"
_SEP_B = b"\x1f"
_FIELD = 200          # longest name kept in a marker (the pipe writes it atomically)
_UNSAFE = re.compile("[\x00\n\x1f]")
_LONGEST_MARK = len(MARK) + 2 * 4 * _FIELD + 3   # two fields of UTF-8, a kind and a newline


class Context(NamedTuple):
    """The workflow (and step) output is tied to; ``step`` is None between steps."""

    workflow_uuid: str
    workflow: str
    step: str | None

    def log_keys(self) -> dict[str, Any]:
        return {"workflow_uuid": self.workflow_uuid, "workflow": self.workflow,
                "step": self.step}


def _text(part: str) -> bytes:
    if _UNSAFE.search(part) or len(part) > _FIELD:   # a name a marker cannot hold as is
        part = _UNSAFE.sub(" ", part)[:_FIELD]
    return part.encode("utf-8", "backslashreplace")


def marker(context: Context | None, current: Context | None = None) -> bytes:
    """The bytes that move a reader at ``current`` to ``context``: short, since one goes
    through the pipe at every step (the workflow once, then only each step's name)."""
    if context is None:
        return MARK + b"\n"
    out = b""
    if current is None or current[:2] != context[:2]:
        out = MARK + b"w" + _text(context.workflow_uuid) + _SEP_B + _text(context.workflow) \
            + b"\n"
        if context.step is None:
            return out
    return out + MARK + b"s" + _text(context.step or "") + b"\n"


def parse_mark(body: bytes, current: Context | None) -> Context | None:
    """The context a marker's ``body`` moves a reader at ``current`` to."""
    text = body.decode("utf-8", "replace")
    if text[:1] == "w":
        uuid, _, name = text[1:].partition(_SEP)
        return Context(uuid, name, None)
    if text[:1] == "s" and current is not None:
        return current._replace(step=text[1:] or None)
    return None


class OutputMarks:
    """The worker's side: writes a marker into its output pipe whenever the context
    changes (on the hot path: a few microseconds and a few bytes per step). Its own copy
    of the pipe, so a step that closes or reuses fd 1 and 2 cannot make a marker land in a
    file of its own."""

    def __init__(self, output_fd: int) -> None:
        self._fd = os.dup(output_fd)   # not inherited by the step's children (CLOEXEC)
        self._current: Context | None = None
        self._fflush: Any = None
        with contextlib.suppress(OSError, AttributeError):
            self._fflush = ctypes.CDLL(None).fflush

    def enter(self, context: Context | None) -> None:
        """From now on, output is ``context``'s (None: no workflow's)."""
        if context == self._current:
            return
        data = marker(context, self._current)
        self._current = context
        # try/except, not contextlib.suppress: this runs at every step, and costs less.
        for stream in (sys.stdout, sys.stderr):   # what the step printed goes first
            try:  # noqa: SIM105
                stream.flush()
            except Exception:   # a stream the step broke or replaced is not ours to mend
                pass
        if self._fflush is not None:
            self._fflush(None)                     # and what C code printed
        try:  # noqa: SIM105
            os.write(self._fd, data)
        except OSError:   # the supervisor is gone: PDEATHSIG is on its way
            pass


class OutputReader:
    """The supervisor's side, one per worker: bytes in, (line, context) out.

    Every byte between two markers belongs to the context the first one set, so a line is
    cut at a marker (the step that wrote it is over) and a line still unfinished waits in
    the buffer with the context it will have. ``final`` (the worker has exited) hands out
    the unfinished last line too.
    """

    LONGEST = 65536   # a line that never ends must not grow without bound

    def __init__(self) -> None:
        self.context: Context | None = None
        self._buffer = b""

    def feed(self, data: bytes, final: bool = False) -> list[tuple[bytes, Context | None]]:
        out: list[tuple[bytes, Context | None]] = []
        buffer = self._buffer + data
        while (at := buffer.find(MARK)) >= 0:
            end = buffer.find(b"\n", at)
            if end < 0:   # a marker not complete yet: the rest comes with the next read
                break
            self._lines(buffer[:at], out)
            self.context = parse_mark(buffer[at + len(MARK):end], self.context)
            buffer = buffer[end + 1:]
        if final:
            self._lines(buffer, out)
            self._buffer = b""
            return out
        cut = buffer.rfind(b"\n") + 1
        self._lines(buffer[:cut], out)
        keep = buffer[cut:]   # an unfinished line (or marker)
        if len(keep) > self.LONGEST:
            nul = keep.rfind(MARK[:1])
            cut = nul if nul >= 0 and len(keep) - nul <= _LONGEST_MARK else len(keep)
            self._lines(keep[:cut], out)
            keep = keep[cut:]
        self._buffer = keep
        return out

    def _lines(self, data: bytes, out: list[tuple[bytes, Context | None]]) -> None:
        out.extend((line, self.context) for line in data.split(b"\n") if line.strip())
