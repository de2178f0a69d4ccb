"""How ``ewfd ctl`` prints: aligned tables, relative ages, colour on a terminal, JSON.

Colour is always requested and ``click.echo`` strips it when the output is not a
terminal (or ``NO_COLOR`` is set), so pipes and files get plain text.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from ..logtail import LogLine
from ..model import parse_iso

Cell = str | tuple[str, str | None]     # text, or (text, colour)

STATUS_COLORS: dict[str, str | None] = {
    "completed": "green", "failed": "red", "cancelled": "yellow", "running": "cyan",
    "pending": None, "interrupted": "magenta", "dead": "red", "stopping": "yellow",
}
LEVEL_COLORS: dict[str, str | None] = {"debug": "bright_black", "info": None,
                                       "warning": "yellow", "error": "red", "critical": "red"}


def echo(text: str = "", *, err: bool = False, nl: bool = True) -> None:
    click.echo(text, err=err, nl=nl, color=False if os.environ.get("NO_COLOR") else None)


def note(text: str) -> None:
    """A remark for people (stderr, so stdout stays data)."""
    echo(click.style(text, fg="yellow"), err=True)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def report(as_json: bool, result: dict[str, Any], sentence: str) -> None:
    """What an action did: ``result`` as JSON, or one sentence for people."""
    if as_json:
        print_json(result)
    else:
        echo(sentence)


def done_without_table(rows: Sequence[Any], as_json: bool, empty: str) -> bool:
    """Print ``rows`` as JSON, or say there is nothing; True when no table is wanted."""
    if as_json:
        print_json(rows)
        return True
    if not rows:
        note(empty)
        return True
    return False


def styled(cell: Cell) -> tuple[str, str]:
    """(plain text, text with colour)."""
    if isinstance(cell, str):
        return cell, cell
    text, fg = cell
    return text, click.style(text, fg=fg, bold=fg == "red") if fg and text else text


def status(value: str | None) -> Cell:
    return (value or "-", STATUS_COLORS.get(value or ""))


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> None:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    cells = [[styled(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, (plain, _) in enumerate(row):
            widths[i] = max(widths[i], len(plain))
    echo(click.style("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
                     .rstrip(), bold=True))
    for row in cells:
        parts = [shown + " " * (widths[i] - len(plain)) for i, (plain, shown) in enumerate(row)]
        parts[-1] = row[-1][1]
        echo("  ".join(parts).rstrip())


def fields(pairs: Sequence[tuple[str, Cell]]) -> None:
    """``label  value`` lines, labels aligned (the head of ``show``)."""
    width = max(len(label) for label, _ in pairs)
    for label, value in pairs:
        echo(f"{label.ljust(width)}  {styled(value)[1]}")


# -- numbers for people ------------------------------------------------------------------
def span(seconds: float) -> str:
    """``45s``, ``3m``, ``2h05m``, ``7d``: a length of time, rounded down for reading."""
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    big, small, unit, sub = (s // 3600, s % 3600 // 60, "h", "m") if s < 86400 else (
        s // 86400, s % 86400 // 3600, "d", "h")
    return f"{big}{unit}{small:02d}{sub}" if small else f"{big}{unit}"


def ago(when: str | datetime | float | None, now: float | None = None) -> str:
    """``just now``, ``42s ago``, ``3m ago`` for an ISO timestamp, a datetime or epoch seconds."""
    if when is None:
        return "-"
    if isinstance(when, str):
        when = parse_iso(when)
    epoch = when.timestamp() if isinstance(when, datetime) else when
    seconds = (time.time() if now is None else now) - epoch
    return "just now" if seconds < 1 else f"{span(seconds)} ago"


def utc(stamp: str | None) -> str:
    """``2026-11-25 23:52:03.795 UTC``: the one way ctl prints a point in time (the stored
    ``...T...Z`` text, made readable and still marked UTC)."""
    if not stamp:
        return "-"
    text = stamp.rstrip("Z").replace("T", " ")
    return f"{text[:23]} UTC"


def millis(ms: float | None) -> str:
    """A step's duration: ``0.4ms``, ``12ms``, ``1.2s``, ``2m03s``."""
    if ms is None:
        return "-"
    if ms < 1:
        return f"{ms:.2f}ms"
    if ms < 10:
        return f"{ms:.1f}ms"
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    s = int(ms // 1000)
    return f"{s // 60}m{s % 60:02d}s" if s < 3600 else span(s)


def size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def count(n: int, noun: str) -> str:
    """``1 workflow``, ``1,204 workflows``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def short(text: str | None, width: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


# -- log lines ---------------------------------------------------------------------------
_FIRST = ("queue", "workflow", "workflow_uuid", "step", "attempt", "duration_ms")
_SKIP = {"timestamp", "level", "event", "pid", "error"}


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and " " not in value and '"' not in value else json.dumps(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def log_line(line: LogLine) -> str:
    """One event per line: time, level, pid, event, then key=value with the error last."""
    rec = line.record
    if rec is None:
        return line.text
    ts = utc(str(rec.get("timestamp", "")))
    level = str(rec.get("level", "")).lower()
    head = (f"{ts:<27}  {click.style(f'{level:<7}', fg=LEVEL_COLORS.get(level))}  "
            f"{rec.get('pid', '')!s:>7}  {rec.get('event', '')!s:<20}")
    keys = [k for k in _FIRST if k in rec] + sorted(k for k in rec
                                                     if k not in _FIRST and k not in _SKIP)
    parts = [f"{k}={_value(rec[k])}" for k in keys]
    if rec.get("error") is not None:
        parts.append(click.style(f"error={_value(rec['error'])}", fg="red", bold=True))
    return f"{head}  {' '.join(parts)}".rstrip()
