"""The size limit of a log line: PIPE_BUF bytes, so that every line is written whole.

A ``write`` of at most PIPE_BUF bytes (4096 on Linux) to a pipe is atomic: it
never mixes with another process's write. Longer lines that the supervisor and
its workers write at once to the same stdout (a pipe, or the journal's stream
socket under systemd) cut into each other, and what comes out is not JSON:
with four workers logging ~90 KB error texts, 71 of 160 lines on a pipe and 25
of 160 on a socket were broken; a file opened ``O_APPEND`` kept them whole.

So a line over the limit has its longest values cut in the middle (the head
and the tail kept, with the count of characters cut) until it fits. The
database keeps the whole error texts and states; the log is a bounded view.

A lock shared by the writing processes (``flock`` on a file each opens) would
keep long lines whole too, at about 1.2 us a line, but a process stopped
(SIGSTOP) or blocked on a full pipe while holding it would freeze the logging
of every other, the supervisor's included.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Mapping
from typing import Any

MAX_LINE: int = getattr(select, "PIPE_BUF", 4096)   # bytes, the newline included
_SHORT = (MAX_LINE - 1) // 4    # fewer characters than this fit whatever they are (UTF-8)
_KEEP_AT_LEAST = 64             # characters of a value that is cut
_MARK_ROOM = 40                 # bytes for the " ...[N chars cut]... " marker

Encode = Callable[[Any], str]


def size(text: str) -> int:
    """Bytes of ``text`` as the log writer encodes it."""
    return len(text.encode("utf-8", "replace"))


def fit(event: Mapping[str, Any], line: str, encode: Encode) -> str:
    """``line`` (``event`` encoded), or a re-encoding of ``event`` with its longest values cut
    so that the line and its newline take at most MAX_LINE bytes."""
    if len(line) <= _SHORT or size(line) < MAX_LINE:
        return line
    fields = dict(event)
    for _ in range(len(fields) + 4):
        over = size(line) - (MAX_LINE - 1)
        if over <= 0:
            return line
        key, text, encoded = _largest(fields, encode)
        if encoded <= _KEEP_AT_LEAST * 2:   # only small values left: too many of them
            break
        keep = int(len(text) * (encoded - over - _MARK_ROOM) / encoded)
        fields[key] = cut(text, max(keep, _KEEP_AT_LEAST))
        line = encode(fields)
    return _minimal(event, size(line), encode)


def cut(text: str, keep: int) -> str:
    """``text`` with its middle replaced by a marker, ``keep`` characters kept."""
    if len(text) <= keep:
        return text
    head = keep - keep // 2
    return f"{text[:head]} ...[{len(text) - keep} chars cut]... {text[len(text) - keep // 2:]}"


def _largest(fields: Mapping[str, Any], encode: Encode) -> tuple[str, str, int]:
    """The key whose value takes the most bytes, that value as text, and its encoded size."""
    best = ("", "", -1)
    for key, value in fields.items():
        text = value if isinstance(value, str) else encode(value)
        encoded = size(encode(text))
        if encoded > best[2]:
            best = (key, text, encoded)
    return best


def _minimal(event: Mapping[str, Any], original: int, encode: Encode) -> str:
    """The last resort (hundreds of fields, or huge keys): what identifies the line."""
    keep = {k: event[k] for k in ("event", "level", "timestamp", "pid") if k in event}
    keep["event"] = cut(str(keep.get("event")), 200)
    keep["log_line_dropped"] = f"{original} bytes over the {MAX_LINE} byte limit"
    return encode(keep)
