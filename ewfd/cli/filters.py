"""The workflow filter options shared by ``workflows`` (to look) and ``retry``/``cancel`` (to
act), so that the list an operator reads is exactly what the action then takes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from ..model import WorkflowQuery, WorkflowStatus
from . import output as out
from .common import DURATION

F = TypeVar("F", bound=Callable[..., Any])

FILTERS = ("queues", "statuses", "names", "since", "error")


def filter_options(statuses: Sequence[str]) -> Callable[[F], F]:
    """``--queue``, ``--status`` (one of ``statuses``), ``--workflow``, ``--since`` and
    ``--error``; the first three repeat (any of them matches)."""
    def decorate(fn: F) -> F:
        fn = click.option("--error", "error", metavar="TEXT",
                          help="Only workflows whose error contains TEXT (any case).")(fn)
        fn = click.option("--since", "since", type=DURATION, metavar="DURATION",
                          help="Only workflows last updated (for a failed one: failed) within "
                               "DURATION: 30m, 12h, 7d.")(fn)
        fn = click.option("--workflow", "--name", "-n", "names", metavar="NAME", multiple=True,
                          help="Only this workflow template; repeat for more.")(fn)
        fn = click.option("--status", "-s", "statuses", type=click.Choice(list(statuses)),
                          multiple=True, help="Only this status; repeat for more.")(fn)
        fn = click.option("--queue", "-q", "queues", metavar="Q", multiple=True,
                          help="Only this queue; repeat for more.")(fn)
        return fn

    return decorate


def given(options: dict[str, Any]) -> bool:
    """Whether any filter option was used."""
    return any(options.get(k) not in (None, ()) for k in FILTERS)


def query(options: dict[str, Any], default_statuses: Sequence[str] = ()) -> WorkflowQuery:
    """The query the filter options describe (statuses default to ``default_statuses``)."""
    since = options.get("since")
    return WorkflowQuery(
        statuses=tuple(WorkflowStatus(s) for s in options.get("statuses") or default_statuses),
        queues=tuple(options.get("queues") or ()), names=tuple(options.get("names") or ()),
        updated_since=None if since is None else time.time() - since,
        error=options.get("error"))


def describe(options: dict[str, Any], q: WorkflowQuery) -> str:
    """``failed workflows of queue orders, updated in the last 1h, error containing 'x'``."""
    text = f"{'/'.join(q.statuses) or 'all'} workflows"
    parts = []
    if q.queues:
        parts.append(f"of queue {'/'.join(q.queues)}")
    if q.names:
        parts.append(f"named {'/'.join(q.names)}")
    if options.get("since") is not None:
        parts.append(f"updated in the last {out.span(options['since'])}")
    if q.error is not None:
        parts.append(f"with an error containing {q.error!r}")
    return " ".join([text, *parts])
