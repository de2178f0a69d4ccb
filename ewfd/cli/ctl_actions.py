"""The ``ewfd ctl`` commands that change something: enqueue, pause, resume, prune,
create-queue, close-queue (retry and cancel: :mod:`ewfd.cli.bulk`). Each is one short
transaction (prune: a few short ones) and says what it did."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from .. import control
from ..config import MAX_WORKERS
from ..model import WorkflowStatus, iso
from . import common
from . import output as out
from .common import (
    DURATION,
    JSON_OBJECT,
    KEY_VALUE,
    SIZE,
    UsageFailure,
    opened,
    target,
    target_options,
)

FINISHED = ["completed", "failed", "cancelled"]


def _configured(found: control.Target, queue: str) -> None:
    if found.config is not None and queue in found.config.queues:
        out.note(f"note: queue {queue} is configured in {found.config.path or 'the config'}: "
                 "the config wins when the daemon starts or reloads")


@click.command()
@click.argument("name")
@click.option("--queue", "-q", default="default", show_default=True, help="Queue to run it on.")
@click.option("--state", type=JSON_OBJECT, metavar="JSON",
              help='Initial state, a JSON object such as \'{"name": "EWF"}\', or @FILE.')
@click.option("--display-name", default="", metavar="TEXT", help="A label for people.")
@click.option("--meta", type=KEY_VALUE, multiple=True, metavar="K=V",
              help="Metadata; repeat for more keys.")
@click.option("--wait", "wait", is_flag=True,
              help="Wait until it is completed, failed or cancelled; print its status and "
                   "state; exit 0 if completed, 1 if not.")
@click.option("--timeout", type=DURATION, metavar="DURATION",
              help=f"With --wait: give up after this long (exit {control.EXIT_TIMEOUT}); the "
                   "workflow carries on. Default: no limit.")
@target_options
def enqueue(name: str, queue: str, state: dict[str, Any] | None, display_name: str,
            meta: tuple[tuple[str, str], ...], wait: bool, timeout: float | None,
            config_path: str | None, db_path: str | None, as_json: bool) -> None:
    """Start a workflow; prints its uuid.

    Stores workflow NAME pending on a queue (default: default). NAME must be a
    template the daemon stored (`ewfd ctl templates`); the workflow runs the
    steps stored with it. Follow it with `ewfd ctl show UUID`, or pass --wait
    to wait here for its outcome (woken by the commit that ends it, not a poll).
    """
    if timeout is not None and not wait:
        raise UsageFailure("--timeout applies to --wait: pass both")
    found = target(config_path, db_path)
    with opened(found, write=True) as store:
        uuid = control.enqueue(store, name, queue=queue, state=state, display_name=display_name,
                               metadata=dict(meta), max_state_size=found.max_state_size)
        if not wait:
            out.report(as_json, {"uuid": uuid}, uuid)
            return
        if not as_json:
            out.echo(uuid)   # at once: the person waiting knows what to look for
        if not control.workers(found, sample=0).running:
            out.note("note: no ewfd run is serving this database: the workflow waits until "
                     "one starts")
        try:
            result = control.wait(store, uuid, timeout)
        except KeyboardInterrupt:
            out.note(f"stopped waiting: workflow {uuid} carries on (ewfd ctl show {uuid})")
            sys.exit(130)
    _print_outcome(result, as_json)
    if result["status"] != "completed":
        sys.exit(control.EXIT_FAILED)


def _print_outcome(wf: dict[str, Any], as_json: bool) -> None:
    """``completed`` / ``failed: <error>`` / ``cancelled``, then the state as JSON."""
    if as_json:
        out.print_json(wf)
        return
    if wf["status"] == "failed":
        out.echo(f"{out.styled(out.status('failed'))[1]}: {wf['error']}")
    else:
        out.echo(out.styled(out.status(wf["status"]))[1])
    out.echo(json.dumps(wf["state"], indent=2, ensure_ascii=False))



def _pause(queue: str, paused: bool, config_path: str | None, db_path: str | None,
           as_json: bool) -> None:
    with opened(target(config_path, db_path), write=True) as store:
        result = control.set_paused(store, queue, paused)
    word = "paused" if paused else "resumed"
    if result["changed"]:
        sentence = f"{word} queue {queue}"
    else:
        sentence = f"queue {queue} was already {'paused' if paused else 'running'}"
    out.report(as_json, result, sentence)


@click.command()
@click.argument("queue")
@target_options
def pause(queue: str, config_path: str | None, db_path: str | None, as_json: bool) -> None:
    """Stop claiming work from a queue.

    Workflows already running carry on; pending ones wait. The pause is stored
    in the database: it survives a daemon restart until `ewfd ctl resume
    QUEUE`.
    """
    _pause(queue, True, config_path, db_path, as_json)


@click.command()
@click.argument("queue")
@target_options
def resume(queue: str, config_path: str | None, db_path: str | None, as_json: bool) -> None:
    """Start claiming from a paused queue again."""
    _pause(queue, False, config_path, db_path, as_json)


@click.command()
@click.option("--older-than", type=DURATION, required=True, metavar="DURATION",
              help="Only workflows last updated longer ago than this: 7d, 12h, 30m.")
@click.option("--status", "statuses", type=click.Choice(FINISHED), multiple=True,
              help="Which finished workflows; repeat for more. Default: completed.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask; required when stdin is not a "
              "terminal (cron, scripts).")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@target_options
def prune(older_than: float, statuses: tuple[str, ...], yes: bool, dry_run: bool,
          config_path: str | None, db_path: str | None, as_json: bool) -> None:
    """Delete old finished workflows.

    Deletes finished workflows, with their history, last updated longer ago
    than --older-than. It asks first on a terminal (--yes skips that). Pending
    and running workflows are never deleted. Rows go in batches of 500, each
    its own short transaction, so the workers are never stalled.
    """
    chosen = [WorkflowStatus(s) for s in statuses or ["completed"]]
    with opened(target(config_path, db_path), write=not dry_run) as store:
        cutoff, total = control.prunable(store, older_than=older_than, statuses=chosen)
        what = f"{'/'.join(chosen)} workflows last updated more than {out.span(older_than)} ago"
        result: dict[str, Any] = {"changed": 0, "matched": total,
                                  "statuses": [str(s) for s in chosen],
                                  "cutoff": iso(datetime.fromtimestamp(cutoff, UTC))}
        if dry_run or total == 0:
            out.report(as_json, result, f"would prune {out.count(total, 'workflow')} ({what})"
                    if dry_run else f"nothing to prune: no {what}")
            return
        if not yes and not common.interactive():
            raise UsageFailure(f"prune would delete {out.count(total, 'workflow')}: pass "
                               "--yes to confirm (stdin is not a terminal)")
        common.confirm(f"delete {out.count(total, 'workflow')} ({what})", yes)
        batches = control.prune(store, cutoff=cutoff, statuses=chosen)
        deleted = 0
        if common.show_progress(total, as_json):
            with click.progressbar(length=total, label="pruning", file=sys.stderr) as bar:
                for n in batches:
                    deleted += n
                    bar.update(n)
        else:
            deleted = sum(batches)
    result["changed"] = deleted
    out.report(as_json, result, f"pruned {out.count(deleted, 'workflow')}")


@click.command("create-queue")
@click.argument("name")
@click.option("--workers", type=click.IntRange(1, MAX_WORKERS), help="Worker processes [new: 1].")
@click.option("--poll-interval", type=DURATION, metavar="DURATION",
              help="Fallback poll period [new: 100ms].")
@click.option("--lease", type=DURATION, metavar="DURATION",
              help="Lease a step holds, renewed while it runs [new: 30s].")
@click.option("--max-crashes", type=click.IntRange(min=1),
              help="Interruptions of one step before the workflow fails [new: 5].")
@click.option("--max-tasks-per-worker", type=click.IntRange(min=0),
              help="Recycle a worker after this many workflows; 0 = never [new: 0].")
@click.option("--max-memory", type=SIZE, metavar="SIZE",
              help="Recycle a worker above this RSS, e.g. 512MiB; 0 = off [new: 0].")
@click.option("--auto-delete/--no-auto-delete", default=None,
              help="Remove the queue once it has been idle for --delete-after.")
@click.option("--delete-after", type=DURATION, metavar="DURATION",
              help="Idle time before an auto-delete queue goes [new: 0s].")
@target_options
def create_queue(name: str, config_path: str | None, db_path: str | None, as_json: bool,
                 **settings: Any) -> None:
    """Add a queue, or change its settings.

    The daemon starts the queue's workers within a second. On an existing
    queue, changes only the settings given (its paused flag is kept).
    """
    found = target(config_path, db_path)
    given = {k: v for k, v in settings.items() if v is not None}
    with opened(found, write=True) as store:
        result = control.create_queue(store, name, given)
    if result["created"]:
        sentence = f"created queue {name} ({out.count(result['workers'], 'worker')})"
    else:
        sentence = f"updated queue {name}" if result["changed"] else f"queue {name} unchanged"
    out.report(as_json, result, sentence)
    _configured(found, name)


@click.command("close-queue")
@click.argument("name")
@click.option("--force", is_flag=True, help="Close it even with pending or running workflows "
              "(pending ones then fail with 'unknown queue').")
@target_options
def close_queue(name: str, force: bool, config_path: str | None, db_path: str | None,
                as_json: bool) -> None:
    """Remove a queue (refused while it has work).

    Its workers stop after their current workflow. Refused while the queue
    holds pending or running workflows: pause it, let it drain (`ewfd ctl
    queues`), then close it.
    """
    found = target(config_path, db_path)
    with opened(found, write=True) as store:
        result = control.close_queue(store, name, force=force)
    out.report(as_json, result, f"closed queue {name}")
    _configured(found, name)


ACTIONS = [enqueue, pause, resume, prune, create_queue, close_queue]
