"""The library's loggers: structlog's once the program (or ``ewfd run``) configured it, else
the standard :mod:`logging` module's.

structlog left unconfigured prints every event to stdout in its development format, so a
program that merely embeds an Engine would print a line per step it never asked for. The
standard library is what every other library logs through, and it stays quiet until the
program configures it (only warnings and errors reach stderr, through Python's last-resort
handler). So an embedded ewfd says nothing unless something goes wrong or the program asks:
``logging.basicConfig(level=logging.INFO)`` shows the events, ``structlog.configure(...)``
sends them through the program's structlog pipeline instead. The choice is made at each
call, so a program may configure logging after it created its Engine.
"""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from typing import Any

import structlog


def get_logger(name: str = "ewfd") -> LibraryLogger:
    """A logger with structlog's interface (``bind``, ``info(event, **keys)``, ...)."""
    return LibraryLogger(name, {})


class LibraryLogger:
    """Bound context plus a choice, at each call, between structlog and :mod:`logging`."""

    __slots__ = ("_configured", "_context", "_name", "_plain")

    def __init__(self, name: str, context: dict[str, Any]) -> None:
        self._name = name
        self._context = context
        self._configured: Any = None      # the structlog logger, made on first use
        self._plain: Any = None           # the logging-backed one, made on first use

    def bind(self, **values: Any) -> LibraryLogger:
        return LibraryLogger(self._name, {**self._context, **values})

    def new(self, **values: Any) -> LibraryLogger:
        return LibraryLogger(self._name, dict(values))

    def unbind(self, *keys: str) -> LibraryLogger:
        return LibraryLogger(self._name, {k: v for k, v in self._context.items()
                                          if k not in keys})

    def _target(self) -> Any:
        if structlog.is_configured():
            if self._configured is None:
                self._configured = structlog.get_logger(self._name).bind(**self._context)
            return self._configured
        if self._plain is None:
            self._plain = structlog.wrap_logger(
                logging.getLogger(self._name), processors=_PLAIN,
                wrapper_class=structlog.stdlib.BoundLogger, context_class=dict,
            ).bind(**self._context)
        return self._plain

    def __getattr__(self, method: str) -> Any:
        """``info``, ``warning``, ``exception``...: the chosen logger's method."""
        return getattr(self._target(), method)


def _render(_: Any, __: str, event: MutableMapping[str, Any]) -> str:
    """``step.failed workflow=billing step=charge error="card declined"`` for a log record."""
    name = str(event.pop("event", ""))
    keys = [f"{k}={_value(v)}" for k, v in event.items() if v is not None]
    return " ".join([name, *keys])


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if not text or any(c.isspace() or c == '"' for c in text) else text


_PLAIN: list[Any] = [structlog.stdlib.filter_by_level, structlog.processors.format_exc_info,
                     _render]
