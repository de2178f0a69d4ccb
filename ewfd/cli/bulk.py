"""``ewfd ctl retry`` and ``ewfd ctl cancel``: on workflows named by uuid or unique prefix,
or on every workflow a filter selects (counted, confirmed, then changed in batches of 500,
each its own short transaction, with a progress bar on long runs)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import click

from .. import control
from ..model import WorkflowStatus
from ..store.base import Store
from . import common, filters
from . import output as out
from .common import Failure, opened, target, target_options

Changes = Callable[[Store, Sequence[str]], Iterator[dict[str, WorkflowStatus]]]


@dataclass(frozen=True)
class Action:
    name: str                       # retry, cancel
    statuses: tuple[str, ...]       # what a filter may select
    default: tuple[str, ...]        # what a filter selects without --status
    changes: Changes


def _retry(store: Store, uuids: Sequence[str]) -> Iterator[dict[str, WorkflowStatus]]:
    for changed in control.retry(store, uuids):
        yield dict.fromkeys(changed, WorkflowStatus.PENDING)


RETRY = Action("retry", tuple(map(str, control.RETRYABLE)), ("failed",), _retry)
CANCEL = Action("cancel", tuple(map(str, control.CANCELLABLE)),
                tuple(map(str, control.CANCELLABLE)), control.cancel)


def _selection_options(action: Action) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = target_options(fn)
        fn = click.option("--yes", "-y", is_flag=True, help="Do not ask before acting on a "
                          "filter; required when stdin is not a terminal.")(fn)
        fn = click.option("--all", "everything", is_flag=True,
                          help=f"Every workflow a filter may select ({'/'.join(action.default)} "
                               "unless --status says otherwise).")(fn)
        fn = filters.filter_options(action.statuses)(fn)
        return click.argument("refs", metavar="[UUID]...", nargs=-1)(fn)

    return decorate


@click.command()
@_selection_options(RETRY)
def retry(refs: tuple[str, ...], everything: bool, yes: bool, config_path: str | None,
          db_path: str | None, as_json: bool, **options: Any) -> None:
    """Rerun failed or cancelled workflows.

    Each goes back to pending at the step where it stopped. Its state is as
    the last successful step left it; attempts start from 1. Fix the cause
    first (`ewfd ctl show UUID` shows the error).

    Name workflows by uuid or a unique start of one (several at once), or
    select them with a filter: --status (default: failed), --queue,
    --workflow, --since, --error, or --all. A filter shows the count and asks
    first (--yes skips that); `ewfd ctl workflows` with the same filter lists
    them.
    """
    _act(RETRY, refs, everything, yes, config_path, db_path, as_json, options)


@click.command()
@_selection_options(CANCEL)
def cancel(refs: tuple[str, ...], everything: bool, yes: bool, config_path: str | None,
           db_path: str | None, as_json: bool, **options: Any) -> None:
    """Cancel pending or running workflows.

    Pending, one never runs; running, it stops before its next step. A step
    in progress is never torn: it finishes, its result is saved, then the
    workflow ends `cancelled` (a retry wait is cut short). A cancel that
    arrives during the last step is too late: the workflow completes, unless
    that step fails. Cancelling one already cancelled or cancelling changes
    nothing (exit 0).

    Name workflows by uuid or a unique start of one (several at once), or
    select them with a filter: --status (default: pending and running),
    --queue, --workflow, --since, --error, or --all. A filter shows the count
    and asks first (--yes skips that).
    """
    _act(CANCEL, refs, everything, yes, config_path, db_path, as_json, options)


def _act(action: Action, refs: tuple[str, ...], everything: bool, yes: bool,
         config_path: str | None, db_path: str | None, as_json: bool,
         options: dict[str, Any]) -> None:
    by_filter = everything or filters.given(options)
    if refs and by_filter:
        raise click.UsageError("name workflows or give a filter, not both")
    if not refs and not by_filter:
        raise click.UsageError(f"name the workflows to {action.name} (UUID or a unique start "
                               "of one), or select them with --status, --queue, --workflow, "
                               "--since, --error or --all")
    with opened(target(config_path, db_path), write=True) as store:
        if refs:
            uuids = control.resolve_all(store, refs)
        else:
            query = filters.query(options, action.default)
            uuids = store.find_uuids(query)
            what = filters.describe(options, query)
            if not uuids:
                out.report(as_json, _result([], {}, []), f"nothing to {action.name}: no {what}")
                return
            common.confirm(f"{action.name} {out.count(len(uuids), 'workflow')} ({what})", yes)
        changed = _apply(action, store, uuids, as_json)
        unchanged = control.why_unchanged(store, action.name,
                                          [u for u in uuids if u not in changed])
    _tell(action, refs, uuids, changed, unchanged, as_json)


def _apply(action: Action, store: Store, uuids: Sequence[str],
           as_json: bool) -> dict[str, WorkflowStatus]:
    changed: dict[str, WorkflowStatus] = {}
    if common.show_progress(len(uuids), as_json):
        with click.progressbar(length=len(uuids), label=f"{action.name}: ",
                               file=sys.stderr) as bar:
            for done in action.changes(store, uuids):
                changed.update(done)
                bar.update(min(control.BATCH, len(uuids) - bar.pos))
    else:
        for done in action.changes(store, uuids):
            changed.update(done)
    return changed


def _result(uuids: Sequence[str], changed: dict[str, WorkflowStatus],
            unchanged: Sequence[control.Unchanged]) -> dict[str, Any]:
    return {"changed": len(changed), "matched": len(uuids), "uuids": list(changed),
            "skipped": [u.as_dict() for u in unchanged]}


def _tell(action: Action, refs: tuple[str, ...], uuids: Sequence[str],
          changed: dict[str, WorkflowStatus], unchanged: Sequence[control.Unchanged],
          as_json: bool) -> None:
    """Report; a named workflow the action does not apply to makes the exit status 1."""
    result = _result(uuids, changed, unchanged)
    single = uuids[0] if len(refs) == 1 else None
    parts = _done(action, changed, single)
    refused = [u.reason for u in unchanged if u.refused] if refs else []
    if refused and not changed and len(refused) == len(unchanged):
        raise Failure("; ".join(refused))       # nothing done, nothing else to say
    kept = [u for u in unchanged if not u.refused]
    if single is not None:      # one workflow named: say its status, as before bulk existed
        status = changed.get(single) or unchanged[0].status
        result.update(uuid=single, status=str(status))
        if action is CANCEL:
            result["cancel_requested"] = status == WorkflowStatus.RUNNING
        parts += [f"{u.reason} (nothing changed)" for u in kept]
    elif kept:
        parts.append(f"{out.count(len(kept), 'workflow')} already cancelled or cancelling "
                     "(nothing changed)")
    if not refs and len(kept) < len(unchanged):     # a filter's pick changed before the act
        parts.append(f"{out.count(len(unchanged) - len(kept), 'workflow')} changed meanwhile "
                     "(left alone)")
    out.report(as_json, result, "; ".join(parts) or f"nothing to {action.name}")
    if refused:
        raise Failure("; ".join(refused))


def _done(action: Action, changed: dict[str, WorkflowStatus], single: str | None) -> list[str]:
    """What changed, for people."""
    if action is RETRY:
        if not changed:
            return []
        again = f"{single} is pending again" if single else "pending again"
        return [f"retried {out.count(len(changed), 'workflow')}: {again}"]
    parts = []
    stopped = sum(1 for s in changed.values() if s == WorkflowStatus.CANCELLED)
    flagged = len(changed) - stopped
    if stopped:
        parts.append(f"cancelled {out.count(stopped, 'workflow')}")
    if flagged:
        how = (f"{single} is running and stops before its next step" if single
               else "running, each stops before its next step")
        parts.append(f"cancelling {out.count(flagged, 'workflow')}: {how}")
    return parts
