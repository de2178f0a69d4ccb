"""Values read from rows a person may have written by hand, checked where they are read.

An outside program or ``sqlite3`` in a shell can put into ewfd's tables whatever the
schema's CHECKs let through, and SQLite's type affinity keeps ``'two'`` as text in an
INTEGER column. Every reader of such a column goes through here: it gets a value it
can use, or an :class:`~ewfd.errors.InvalidRow` that names the table, the row and the
column, so one bad row never stops the daemon, a worker or a listing. Listings take
the ``lenient_*`` readers, which show what they can instead of failing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from ..errors import InvalidRow
from ..model import MAX_WORKERS, Attempt, QueueSpec, Step, WorkflowStatus, parse_iso

EPOCH = datetime.fromtimestamp(0, UTC)


class Row(Protocol):
    """A row by column name (``sqlite3.Row``, a dict)."""

    def __getitem__(self, key: str) -> Any: ...


def show(value: Any) -> str:
    """A bad value as it appears in an error: short, and never raising."""
    return f"{value!r:.60}"


# -- strict: a usable value or InvalidRow ----------------------------------------------
# ``column`` prefixes the message ("workers 'two': expected ..."); without it the message
# is only the expectation, for callers that name the column themselves.
def _bad(column: str, value: Any, expected: str) -> InvalidRow:
    return InvalidRow(f"{column} {show(value)}: {expected}" if column else expected)


def integer(value: Any, column: str = "", low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or \
            (high is not None and value > high):
        top = f" and <= {high}" if high is not None else ""
        raise _bad(column, value, f"expected an integer >= {low}{top}")
    return value


def number(value: Any, column: str = "", low: float = 0.0, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value) or value < low or (high is not None and value > high):
        bounds = (f" >= {low:g}" if math.isfinite(low) else "") + \
            (f" and <= {high:g}" if high is not None else "")
        raise _bad(column, value, f"expected a number{bounds}")
    return float(value)


def flag(value: Any, column: str = "") -> bool:
    if isinstance(value, bool) or not isinstance(value, int) or value not in (0, 1):
        raise _bad(column, value, "expected 0 or 1")
    return bool(value)


def text(value: Any, column: str = "") -> str:
    if not isinstance(value, str) or not value:
        raise _bad(column, value, "expected non-empty text")
    return value


def status(value: Any) -> WorkflowStatus:
    try:
        return WorkflowStatus(value)
    except ValueError:
        raise InvalidRow(f"status {show(value)}: expected one of "
                         f"{', '.join(str(s) for s in WorkflowStatus)}") from None


def step_dicts(raw: Any, column: str = "steps") -> list[dict[str, Any]]:
    """A JSON list of at least one step (as :meth:`Step.to_dict` writes them)."""
    try:
        data = json.loads(raw) if isinstance(raw, str | bytes) else None
    except ValueError:
        data = None
    if not isinstance(data, list) or not data:
        raise _bad(column, raw, "expected a JSON list of at least one step")
    for item in data:
        try:
            if not isinstance(item, dict):
                raise TypeError("not an object")
            Step.from_dict(item)
        except (TypeError, ValueError, KeyError) as exc:
            where = f"{column}: " if column else ""
            raise InvalidRow(f"{where}step {show(item)}: {exc}") from None
    return data


def steps(raw: Any) -> list[Step]:
    """Stored steps of a workflow (``column`` left to the caller, who names it)."""
    return [Step.from_dict(d) for d in step_dicts(raw, "")]


_QUEUE_COLUMNS: dict[str, Callable[[Any, str], Any]] = {
    "workers": lambda v, c: integer(v, c, 1, MAX_WORKERS),
    "poll_interval": lambda v, c: number(v, c, 0.001, 3600.0),
    "auto_delete": flag,
    "delete_after": number,
    "pop_timeout": number,
    "lease": lambda v, c: number(v, c, 1.0),
    "max_crashes": lambda v, c: integer(v, c, 1),
    "max_tasks_per_worker": integer,
    "max_memory": integer,
    "paused": flag,
}


def queue_spec(row: Row) -> QueueSpec:
    """A ``queues`` row as a QueueSpec; InvalidRow names the first column that is wrong."""
    name = text(row["name"], "name")
    values = {column: check(row[column], column) for column, check in _QUEUE_COLUMNS.items()}
    try:
        return QueueSpec(name=name, **values)
    except (TypeError, ValueError) as exc:
        raise InvalidRow(str(exc)) from None


# -- lenient: for listings, which show what they can ------------------------------------
def lenient_text(value: Any) -> str | None:
    """Text to show for a column meant to hold text: bytes decoded, numbers written out."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def lenient_time(value: Any, default: datetime | None = EPOCH) -> datetime | None:
    try:
        return parse_iso(value)
    except (ValueError, TypeError, AttributeError):
        return default


def lenient_int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def lenient_status(value: Any) -> tuple[WorkflowStatus, str | None]:
    """The status, or ``failed`` with the reason when the row holds something else (only
    possible with the schema's CHECKs switched off)."""
    try:
        return status(value), None
    except InvalidRow as exc:
        return WorkflowStatus.FAILED, f"invalid row: {exc}"


def attempt(row: Row) -> Attempt:
    """A ``history`` row, as well as it can be read."""
    duration, pid = row["duration_ms"], row["worker_pid"]
    finite = isinstance(duration, int | float) and not isinstance(duration, bool) and \
        math.isfinite(duration)
    return Attempt(
        step=lenient_text(row["step"]) or "?",
        step_index=lenient_int(row["step_index"]),
        attempt=lenient_int(row["attempt"]),
        started_at=lenient_time(row["started_at"]) or EPOCH,
        finished_at=lenient_time(row["finished_at"], None),
        duration_ms=float(duration) if finite else None,
        outcome=lenient_text(row["outcome"]) or "?",
        error=lenient_text(row["error"]),
        worker_pid=lenient_int(pid) if isinstance(pid, int) else None)


def lenient_steps(raw: Any) -> list[dict[str, Any]]:
    """A template's stored steps, or none when they cannot be read."""
    try:
        return step_dicts(raw)
    except InvalidRow:
        return []
