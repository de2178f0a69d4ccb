"""``ewfd ctl``: the group, and the commands that only look (queues, workflows, show,
templates, workers, tail). The commands that act are in :mod:`ewfd.cli.ctl_actions` and
:mod:`ewfd.cli.bulk`."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from .. import control
from ..config import BUILT_IN
from ..logtail import LogFilter
from ..logtail import tail as tail_log
from ..model import WorkflowStatus
from . import filters
from . import output as out
from .bulk import cancel, retry
from .common import (
    CtlGroup,
    Failure,
    UsageFailure,
    global_options,
    opened,
    target,
    target_options,
)
from .ctl_actions import ACTIONS

STATUSES = [str(s) for s in WorkflowStatus]
STATE_LINES = 40      # longer state is cut in the text view (--json shows it all)


@click.group(cls=CtlGroup)
@global_options
def ctl() -> None:
    """Inspect and operate a running ewfd: queues, workflows, workers, logs.

    Each command finds the database as `ewfd run` finds its config (--config,
    else $EWFD_CONFIG, else ./ewfd.toml, else /etc/ewfd/ewfd.toml, else
    ./ewfd.db), or takes --db PATH. Add --json for scripts. --config, --db
    and --json go before or after the command. Reading never blocks the
    workers; each action is one short transaction, safe while the daemon runs.

    \b
    Look:
      queues                      backlog per queue: pending, running, failed, oldest
      workflows --status failed   what failed, newest first
      show UUID                   one workflow: state, every attempt and its error
      workers                     processes: pid, what each runs, RSS, CPU
      templates                   workflow names, their steps and retry policies
      tail -f [--workflow UUID]   the daemon's log, one readable line per event
    \b
    Act:
      retry UUID... | --status failed --queue Q ...
                                  failed/cancelled -> pending, from where it stopped
      cancel UUID... | --queue Q ...
                                  pending: never runs; running: stops before next step
      pause QUEUE / resume QUEUE  stop / restart claiming (running steps finish)
      enqueue NAME --state JSON   start a workflow; prints its uuid (--wait: its outcome)
      prune --older-than 7d       delete old finished workflows and their history
      create-queue / close-queue [--drain]
                                  add / remove a queue (--drain: once its work ran)
    \b
    A UUID can be any unique start of one (`ewfd ctl show 5d66`).
    Exit codes: 0 ok; 1 not found, does not apply, or failed; 2 bad usage.
    """


for _command in [retry, cancel, *ACTIONS]:
    ctl.add_command(_command)


@ctl.command()
@target_options
def queues(config_path: str | None, db_path: str | None, as_json: bool) -> None:
    """Backlog and counts per queue.

    Per queue: workers, paused (or draining: closing once empty), counts by
    status, age of the oldest pending, and FROM: where its settings come from
    (config: the daemon's config file or `ewfd run --queue`, changed there;
    ctl: `ewfd ctl create-queue`; api: `engine.create_queue`). Pending work
    with an old OLDEST PENDING means nothing claims it: check PAUSED, then
    `ewfd ctl workers`. Names on workflows that are not a queue
    (a queue closed with rows left, or a name no queue ever had, whose rows
    were rejected) are listed apart, below.
    The last line says how long finished workflows are kept ([retention] in
    the config; the daemon prunes them).
    """
    found = target(config_path, db_path)
    policy = control.retention(found)
    with opened(found) as store:
        rows = control.queues(store, policy)
    if out.done_without_table(rows, as_json, "no queues yet: ewfd run stores the configured "
                              "queues when it starts"):
        return
    real = [r for r in rows if r["kind"] == "queue"]
    other = [r for r in rows if r["kind"] != "queue"]
    counts = ["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
    if real:
        out.table(["QUEUE", "WORKERS", "PAUSED", *counts, "OLDEST PENDING", "FROM"],
                  [[r["queue"], ("invalid", "red") if r.get("invalid") else str(r["workers"]),
                    _paused(r), *_counts(r),
                    "-" if r["oldest_pending_age_s"] is None
                    else out.span(r["oldest_pending_age_s"]), r["origin"] or "-"]
                   for r in real])
        _queue_notes(real)
    if other:
        out.echo(("\n" if real else "") + "not queues: names left on workflows")
        out.table(["NAME", "KIND", *counts],
                  [["(no queue)" if r["queue"] is None else r["queue"], (r["kind"], "yellow"),
                   *_counts(r)] for r in other])
        kinds = {r["kind"] for r in other}
        out.note("\n".join(text for kind, text in _KIND_NOTES if kind in kinds))
    for r in real:
        if r.get("invalid"):
            out.note(f"queue {r['queue']}: its queues row cannot be used ({r['invalid']}); the "
                     "daemon skips it (a configured queue takes the config's settings)")

    out.echo(retention_line(policy), err=True)

def _paused(r: dict[str, Any]) -> out.Cell:
    if r["draining"]:
        return ("draining", "yellow")
    return ("paused", "yellow") if r["paused"] else "no"


def _queue_notes(rows: list[dict[str, Any]]) -> None:
    """Where the settings of configured queues are written, and what draining means."""
    places: dict[str, list[str]] = {}
    for r in rows:
        if r["origin"] == "config":
            places.setdefault(r["defined_in"] or "the daemon's config", []).append(r["queue"])
    notes = [f"config: {where} ({', '.join(names)}): "
             + ("to change them, write a config file (`ewfd init`) and restart ewfd "
                "with --config" if where == BUILT_IN else "change them there, then SIGHUP")
             for where, names in places.items()]
    if any(r["draining"] for r in rows):
        notes.append("draining: takes no new workflows; closed once none is pending or running")
    if notes:
        out.note("\n".join(notes))


#: What each kind of name that is not a queue means (only the kinds listed are explained).
_KIND_NOTES = (
    ("closed", "closed: its queue was removed (`ewfd ctl create-queue NAME` runs what is "
               "pending)"),
    ("unknown", "unknown: no queue ever had that name; its rows were rejected"),
    ("none", "none: workflows without a queue, run in-process by engine.run"),
)


def _counts(r: dict[str, Any]) -> list[out.Cell]:
    return [f"{r['pending']:,}", f"{r['running']:,}", f"{r['completed']:,}",
            (f"{r['failed']:,}", "red" if r["failed"] else None), f"{r['cancelled']:,}"]


def retention_line(policy: dict[str, Any] | None) -> str:
    """``retention: completed 7d, failed 30d, cancelled forever (daemon: a pass every 1m,
    last 12s ago, 1,204 pruned)``: what ``ctl queues`` prints under its table."""
    if policy is None:
        return "retention: unknown (no daemon running; pass --config to read its policy)"
    kept = [(s, policy.get(s)) for s in ("completed", "failed", "cancelled")]
    if all(k is None for _, k in kept):
        return ("retention: none: finished workflows are kept until `ewfd ctl prune` "
                "([retention] in the config)")
    terms = ", ".join(f"{s} {'forever' if k is None else out.span(k)}" for s, k in kept)
    how = f"a pass every {out.span(policy.get('interval') or 0)}"
    if policy.get("source") == "daemon":
        pruned = sum((policy.get("pruned") or {}).values())
        last = policy.get("last_pass_at")
        how = (f"daemon: {how}, last {out.ago(last) if last else 'not yet'}, "
               f"{pruned:,} pruned since it started")
    else:
        how = f"config, the daemon is not running: {how}"
    return f"retention: {terms} ({how})"


def step_label(wf: dict[str, Any]) -> str:
    """``bye (2/2)``: the step a workflow is at (or failed at), of how many; ``-`` for one
    that never ran a step (rejected at the door, cancelled while pending)."""
    total = len(wf["steps"])
    if wf["status"] == "completed" and total:
        return f"done ({total}/{total})"
    if not wf.get("started", True):
        return "-"
    if wf["step"] is None:
        return f"#{wf['current_step']}"
    return f"{wf['step']} ({wf['current_step'] + 1}/{total})"


@ctl.command()
@filters.filter_options(STATUSES)
@click.option("--limit", "-l", type=click.IntRange(min=1), default=50, show_default=True,
              help="How many, newest first.")
@target_options
def workflows(limit: int, config_path: str | None, db_path: str | None, as_json: bool,
              **options: Any) -> None:
    """List workflows, newest first.

    STEP is the step a workflow is at, or the one it failed at ("-": it never
    ran a step). Filters narrow (--status, --queue and --workflow repeat, any
    of them matches); `ewfd ctl retry` and `cancel` take the same filters.
    Then `ewfd ctl show UUID` for the details.
    """
    with opened(target(config_path, db_path)) as store:
        rows = control.list_workflows(store, filters.query(options), limit=limit)
    if out.done_without_table(rows, as_json, "no workflows match"):
        return
    out.table(["UUID", "NAME", "QUEUE", "STATUS", "STEP", "CREATED", "UPDATED", "ERROR"],
              [[r["uuid"], r["name"], r["queue"] or "-", out.status(r["status"]), step_label(r),
                out.ago(r["created_at"]), out.ago(r["updated_at"]), out.short(r["error"])]
               for r in rows])
    if len(rows) == limit:
        narrow = "" if options.get("statuses") else ", --status to narrow"
        out.note(f"showing the newest {limit}: use --limit for more{narrow}")


@ctl.command()
@click.argument("uuid")
@target_options
def show(uuid: str, config_path: str | None, db_path: str | None, as_json: bool) -> None:
    """One workflow: state, attempts, errors.

    UUID may be any unique start of one. Its fields, its state (raw JSON),
    and its history: every attempt of every step, with when it started (UTC),
    how long it took, its outcome (completed, failed, interrupted: the worker
    died) and error, and the pid of the worker that ran it.
    """
    with opened(target(config_path, db_path)) as store:
        wf = control.show(store, uuid)
    if as_json:
        out.print_json(wf)
        return
    meta = " ".join(f"{k}={v}" for k, v in sorted(wf["metadata"].items()))
    out.fields([
        ("uuid", wf["uuid"]), ("name", wf["name"]), ("display name", wf["display_name"] or "-"),
        ("queue", wf["queue"] or "-"), ("status", out.status(wf["status"])),
        ("step", step_label(wf)),
        *([("progress", progress_label(wf["progress"]))] if wf["progress"] else []),
        ("steps", " -> ".join(wf["steps"]) or "-"),
        ("error", (wf["error"], "red") if wf["error"] else "-"),
        ("created", f"{out.utc(wf['created_at'])} ({out.ago(wf['created_at'])})"),
        ("updated", f"{out.utc(wf['updated_at'])} ({out.ago(wf['updated_at'])})"),
        ("metadata", meta or "-"),
    ])
    lines = json.dumps(wf["state"], indent=2, ensure_ascii=False).splitlines()
    out.echo("\nstate")
    for line in lines[:STATE_LINES]:
        out.echo(f"  {line}")
    if len(lines) > STATE_LINES:
        out.note(f"  ... {len(lines) - STATE_LINES:,} more lines: use --json")
    out.echo("\nhistory")
    if not wf["history"]:
        out.echo("  (no attempt finished yet)" if wf["started"] else "  (it never ran a step)")
        return
    out.table(["  #", "STEP", "ATTEMPT", "STARTED", "DURATION", "OUTCOME", "PID", "ERROR"],
              [[f"  {i}", h["step"], str(h["attempt"]), out.utc(h["started_at"]),
                out.millis(h["duration_ms"]), out.status(h["outcome"]),
                str(h["worker_pid"] or "-"), (out.short(h["error"], 200), "red")]
               for i, h in enumerate(wf["history"], 1)])


def percent(fraction: float | None, message: str | None, width: int = 60) -> str:
    """``42% copying files``: a step's progress, for people (``-`` when none)."""
    if fraction is None:
        return "-"
    return out.short(f"{int(fraction * 100)}% {message or ''}".rstrip(), width)


def progress_label(p: dict[str, Any]) -> str:
    """``42% copying files (step export, 3s ago)``, from ``show --json``'s ``progress``."""
    return (f"{percent(p['fraction'], p['message'])} (step {p['step'] or '?'}, "
            f"{out.ago(p['updated_at'])})")


def _g(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _seconds(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value * 1000:g}ms" if 0 < value < 1 else f"{value:g}s"


def describe_retry(step: dict[str, Any]) -> tuple[str, str]:
    """(attempts, backoff) of a stored step, for people."""
    retry = step.get("retry") or {}
    b = retry.get("backoff")
    if not b:
        return "1", "-"
    kind = b.get("type")
    if kind == "constant":
        text = f"constant {_seconds(b.get('interval'))}"
    elif kind == "exponential":
        text = (f"exponential {_seconds(b.get('initial'))}..{_seconds(b.get('max_interval'))} "
                f"x{_g(b.get('multiplier'))}")
        if b.get("jitter"):
            text += f" jitter {_g(b.get('jitter'))}"
    else:
        text = str(kind)
    return str(retry.get("max_attempts", 1)), text


@ctl.command()
@target_options
def templates(config_path: str | None, db_path: str | None, as_json: bool) -> None:
    """Workflow templates, steps, retry policies.

    What the daemon stored at start: each template's steps with their
    attempts, backoff and timeout. These are the names `ewfd ctl enqueue`
    accepts. A template missing here means the daemon has not run with the app
    that registers it.
    """
    with opened(target(config_path, db_path)) as store:
        rows = control.templates(store)
    if out.done_without_table(rows, as_json,
                              "no templates stored: start ewfd run once with your app"):
        return
    table: list[list[Any]] = []
    for t in rows:
        if not t["steps"]:
            table.append([t["name"], "-", ("(its stored steps cannot be read)", "red"), "", "",
                          ""])
        for i, step in enumerate(t["steps"], 1):
            attempts, backoff = describe_retry(step)
            table.append([t["name"] if i == 1 else "", str(i), str(step.get("name")), attempts,
                          backoff, _seconds(step.get("timeout"))])
    out.table(["TEMPLATE", "#", "STEP", "ATTEMPTS", "BACKOFF", "TIMEOUT"], table)


@ctl.command()
@target_options
def workers(config_path: str | None, db_path: str | None, as_json: bool) -> None:
    """Supervisor and worker processes.

    Pid, queue, state (idle, running, stopping), the workflow and step each
    runs and the progress that step reported (ctx.progress), RSS and CPU.
    Read from the runtime file the supervisor keeps next to the database
    (<db>.workers.json), checked against the live processes: entries of a
    supervisor that is gone show as dead. CPU is sampled over 0.2 s.
    """
    report = control.workers(target(config_path, db_path))
    if as_json:
        out.print_json(report.rows)
    elif report.rows:
        out.table(["PID", "ROLE", "QUEUE", "STATE", "WORKFLOW", "STEP", "PROGRESS", "TASKS",
                   "RSS", "CPU"],
                  [[str(r["pid"]), r["role"], r["queue"] or "-",
                    out.status("dead" if r["alive"] is False else r["state"]),
                    r["workflow_uuid"] or "-", r["step"] or "-",
                    percent(r["progress"], r["progress_message"], 30),
                    "-" if r["tasks"] is None else str(r["tasks"]), out.size(r["rss_bytes"]),
                    "-" if r["cpu_percent"] is None else f"{r['cpu_percent']:.1f}%"]
                   for r in report.rows])
    if report.note:
        out.note(report.note)
    elif report.updated_at is not None and time.time() - report.updated_at > 30:
        out.note(f"the supervisor last reported {out.ago(report.updated_at)}: it may be stuck")


@ctl.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("--lines", "-n", type=click.IntRange(min=0), default=20, show_default=True,
              help="How many matching lines of the past to show first.")
@click.option("--workflow", "-w", metavar="UUID", help="Only lines about this workflow "
              "(a uuid prefix works).")
@click.option("--queue", "-q", metavar="Q", help="Only lines about this queue.")
@click.option("--level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="Only this level and above.")
@click.option("--file", "log_path", metavar="PATH", type=click.Path(dir_okay=False),
              help="Read this log file instead of the config's log_file.")
@target_options
def tail(follow: bool, lines: int, workflow: str | None, queue: str | None, level: str | None,
         log_path: str | None, config_path: str | None, db_path: str | None,
         as_json: bool) -> None:
    """The daemon's log, readable; -f follows.

    One line per event: time, level, pid, event, details. Reads the config's
    log_file (or --file). Errors are highlighted on a terminal; lines that are
    not JSON (a crash dump) are shown as they are, unless --workflow or
    --queue filters. --json prints the original lines.
    """
    path = log_path or _log_file(config_path, db_path)
    keep = LogFilter(workflow=workflow, queue=queue, level=level)
    try:
        for line in tail_log(path, lines=lines, follow=follow, keep=keep):
            if not as_json:
                out.echo(out.log_line(line))
            elif line.record is not None:
                out.echo(line.text)
    except FileNotFoundError:
        raise Failure(f"no log file at {path} (has the daemon started?)") from None
    except IsADirectoryError:
        raise UsageFailure(f"{path} is a directory, not a log file") from None
    except KeyboardInterrupt:
        pass


def _log_file(config_path: str | None, db_path: str | None) -> str:
    found = target(config_path, db_path)
    if found.config is None:
        raise UsageFailure("tail needs the config that names log_file: pass --config or --file")
    if found.config.log_file == "-":
        where = found.config.path or "the default config"
        raise Failure(f"the daemon logs to stdout (log_file = \"-\" in {where}): read them where "
                      "its stdout goes (journalctl -u ewfd), or set log_file")
    return found.config.log_file
