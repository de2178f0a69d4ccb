"""What ``ewfd ctl`` does: queries and actions on a daemon's database, as plain data.

No printing and no click here, so each operation can be called from a test or
another tool; :mod:`ewfd.cli.ctl` parses arguments and prints. Read commands open
the database read-only and never import the app (state is returned as raw JSON);
every action is one short store transaction, so it cannot stall the workers.
"""

from __future__ import annotations

import os
import socket
import time
import uuid as uuid_mod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import psutil

from . import codec, config_queues, identity, runtime
from .config import BUILT_IN, QUEUE_NAME_RE, Config, ConfigError, load_config
from .errors import (
    InvalidRow,
    QueueNotFound,
    StateError,
    StoreError,
    TemplateNotFound,
    WorkflowNotFound,
)
from .handle import WorkflowHandle
from .model import Attempt, QueueSpec, Step, Workflow, WorkflowQuery, WorkflowStatus, iso
from .store.base import Store, closing_error
from .store.sqlite import SQLiteStore

EXIT_FAILED = 1      # the thing asked for does not exist, or the action does not apply
EXIT_USAGE = 2       # bad input
EXIT_TIMEOUT = 124   # enqueue --wait gave up waiting (the code of timeout(1))

DEFAULT_MAX_STATE_SIZE = 1024 * 1024
BATCH = 500          # workflows changed per transaction by a bulk action (and prune)
AMBIGUOUS_SHOWN = 5  # candidates listed when a uuid prefix names several workflows
UNKNOWN_QUEUE = "unknown queue"     # in the error of a row rejected by reject_unknown_queues


class CtlError(Exception):
    """An operation that cannot be done; ``exit_code`` is what ``ewfd ctl`` exits with."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- finding and opening the database ------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """The database ctl works on, and the config it came from (None with ``--db``)."""

    database: str
    config: Config | None = None

    @property
    def max_state_size(self) -> int:
        return self.config.max_state_size if self.config else DEFAULT_MAX_STATE_SIZE


def locate(config_path: str | None = None, db_path: str | None = None) -> Target:
    """``--db`` wins; else the config ``ewfd run`` would read ($EWFD_CONFIG, ./ewfd.toml)."""
    if db_path is not None:
        return Target(os.path.normpath(os.path.abspath(os.path.expanduser(db_path))))
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise CtlError(str(exc), exc.exit_code) from None
    return Target(str(config.database), config)


def open_store(target: Target, *, write: bool = False) -> Store:
    """Read-only unless ``write``. A missing file is an error, never a new empty database,
    and a file that is not an ewfd database is never given ewfd's tables."""
    if not os.path.exists(target.database):
        raise CtlError(f"no database at {target.database} (start ewfd run, or pass --db or "
                       "--config)")
    synchronous = target.config.synchronous if target.config else "normal"
    try:
        return SQLiteStore(target.database, readonly=not write, create=False,
                           synchronous=synchronous)
    except StoreError as exc:
        raise CtlError(str(exc)) from None


# -- queries -------------------------------------------------------------------------------
def _step_names(wf: Workflow, templates: Mapping[str, list[dict[str, Any]]]) -> list[str]:
    if wf.steps:
        return [s.name for s in wf.steps]
    return [str(s.get("name")) for s in templates.get(wf.name, [])]   # a row inserted by SQL


def workflow_dict(wf: Workflow, templates: Mapping[str, list[dict[str, Any]]], *,
                  started: bool) -> dict[str, Any]:
    """``started`` is False for a workflow that never ran a step (a row rejected at the door,
    a workflow cancelled while pending): its ``step`` is where it would start, not one it
    was at."""
    names = _step_names(wf, templates)
    step = names[wf.current_step] if 0 <= wf.current_step < len(names) else None
    return {
        "uuid": wf.uuid, "name": wf.name, "queue": wf.queue, "status": str(wf.status),
        "current_step": wf.current_step, "step": step, "steps": names, "started": started,
        "display_name": wf.display_name, "metadata": wf.metadata, "error": wf.error,
        "created_at": iso(wf.created_at),
        "updated_at": iso(wf.updated_at) if wf.updated_at else None,
    }


def attempt_dict(a: Attempt) -> dict[str, Any]:
    return {
        "step": a.step, "step_index": a.step_index, "attempt": a.attempt,
        "started_at": iso(a.started_at),
        "finished_at": iso(a.finished_at) if a.finished_at else None,
        "duration_ms": a.duration_ms, "outcome": a.outcome, "error": a.error,
        "worker_pid": a.worker_pid,
    }


def list_workflows(store: Store, query: WorkflowQuery | None = None, *,
                   limit: int | None = 50) -> list[dict[str, Any]]:
    """The workflows ``query`` selects (all by default), newest first."""
    templates = store.load_templates()
    found = store.find_workflows(query or WorkflowQuery(), limit=limit, typed=False)
    ran = store.with_history([wf.uuid for wf in found])
    return [workflow_dict(wf, templates, started=_started(wf, ran)) for wf in found]


def _started(wf: Workflow, ran: set[str]) -> bool:
    # A running workflow's first attempt has no history row until it ends.
    return wf.uuid in ran or wf.status == WorkflowStatus.RUNNING


def resolve(store: Store, ref: str) -> str:
    """The uuid ``ref`` names: the uuid itself, or the one uuid that starts with it. An
    ambiguous prefix is refused with its candidates, so an action never guesses."""
    if not ref:
        raise CtlError("an empty uuid matches every workflow: give one", EXIT_USAGE)
    query = WorkflowQuery(uuid_prefix=ref)
    found = store.find_uuids(query, limit=AMBIGUOUS_SHOWN + 1)
    if ref in found or len(found) == 1:
        return ref if ref in found else found[0]
    if not found:
        raise CtlError(f"no workflow {ref}")
    try:
        return store.load_workflow(ref, typed=False).uuid     # exact, beyond the first few
    except WorkflowNotFound:
        pass
    total = store.count_workflows(query)
    listed = ", ".join(found[:AMBIGUOUS_SHOWN])
    more = f" and {total - AMBIGUOUS_SHOWN:,} more" if total > AMBIGUOUS_SHOWN else ""
    raise CtlError(f"{ref!r} is the start of {total:,} workflow uuids ({listed}{more}): "
                   "give more of it", EXIT_USAGE)


def resolve_all(store: Store, refs: Sequence[str]) -> list[str]:
    """Every ref resolved (each once, in order) before anything is changed."""
    return list(dict.fromkeys(resolve(store, ref) for ref in refs))


def show(store: Store, ref: str) -> dict[str, Any]:
    uuid = resolve(store, ref)
    try:
        wf = store.load_workflow(uuid, typed=False)
        history = store.history(uuid)
    except WorkflowNotFound:
        raise CtlError(f"no workflow {uuid}") from None
    templates = store.load_templates()
    out = workflow_dict(wf, templates,
                        started=bool(history) or wf.status == WorkflowStatus.RUNNING)
    out["state"] = wf.state
    out["progress"] = progress_dict(wf, templates)
    out["history"] = [attempt_dict(a) for a in history]
    return out


def progress_dict(wf: Workflow, templates: Mapping[str, list[dict[str, Any]]]
                  ) -> dict[str, Any] | None:
    """What the running step last reported with ``ctx.progress`` (None when nothing runs or
    it reported nothing)."""
    p = wf.progress
    if p is None:
        return None
    names = _step_names(wf, templates)
    step = names[p.step_index] if 0 <= p.step_index < len(names) else None
    return {"fraction": p.fraction, "message": p.message, "step": step,
            "updated_at": iso(p.updated_at)}


def queues(store: Store, policy: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per queue its counts, with ``kind``: ``queue`` (stored: it has settings and workers),
    ``closed`` (a name left on rows after its queue was removed), ``unknown`` (a name no
    queue ever had: every row on it was rejected) or ``none`` (workflows without a queue,
    run in-process by ``engine.run``; ``queue`` is None); for a queue, whether it is
    ``draining`` and where its settings come from (``origin``, ``defined_in``). Each entry
    carries the retention ``policy`` too (:func:`retention`)."""
    stored = {q.name: q for q in store.load_queues()}
    rows = store.queue_stats()
    for row in rows:
        spec = stored.get(row["queue"]) if row["queue"] is not None else None
        if row["queue"] is None:
            row["kind"] = "none"
        else:
            row["kind"] = "queue" if spec is not None else _leftover_kind(store, row)
        if spec is None:
            row["workers"] = row["paused"] = None
        row["draining"] = spec.draining if spec else None
        row["origin"] = spec.origin if spec else None     # whose settings: config, ctl, api
        row["defined_in"] = spec.defined_in if spec else None
        row["retention"] = policy
    return rows


def _leftover_kind(store: Store, row: dict[str, Any]) -> str:
    total = sum(row[str(s)] for s in WorkflowStatus)
    rejected = store.count_workflows(WorkflowQuery(
        queues=(row["queue"],), statuses=(WorkflowStatus.FAILED,), error=UNKNOWN_QUEUE))
    return "unknown" if total and rejected == total else "closed"


def retention(target: Target) -> dict[str, Any] | None:
    """The retention policy in force: seconds each finished status is kept (None: forever).
    A running daemon's own (``source: "daemon"``, with its last pass and counts), else the
    config's (``"config"``); None when neither is known (``--db`` with no daemon)."""
    data = runtime.read(runtime.path_for(target.database)) or {}
    sup = data.get("supervisor")
    if (isinstance(sup, dict) and isinstance(sup.get("retention"), dict)
            and not identity.is_dead(str(sup.get("identity") or ""))):
        return {**sup["retention"], "source": "daemon"}
    if target.config is None:
        return None
    policy = target.config.retention
    return {"completed": policy.completed, "failed": policy.failed,
            "cancelled": policy.cancelled, "interval": policy.interval, "last_pass_at": None,
            "pruned": None, "source": "config"}


def templates(store: Store) -> list[dict[str, Any]]:
    return [{"name": name, "steps": steps} for name, steps in store.load_templates().items()]


# -- actions -------------------------------------------------------------------------------
def _known_queues(store: Store) -> str:
    names = [q.name for q in store.load_queues()]
    return f"known: {', '.join(names)}" if names else "no queues are stored yet: start ewfd run"


def enqueue(store: Store, name: str, *, queue: str = "default",
            state: dict[str, Any] | None = None, display_name: str = "",
            metadata: Mapping[str, str] | None = None,
            max_state_size: int = DEFAULT_MAX_STATE_SIZE) -> str:
    """Store a pending workflow with the template's stored steps; returns its uuid."""
    wf = Workflow(uuid=str(uuid_mod.uuid4()), name=name, queue=queue,
                  display_name=display_name, metadata=dict(metadata or {}))
    try:
        wf.check_text()
    except ValueError as exc:
        raise CtlError(str(exc), EXIT_USAGE) from None
    try:
        wf.steps = [Step.from_dict(d) for d in store.load_template(name)]
    except TemplateNotFound:
        known = sorted(store.load_templates())
        hint = (f"known: {', '.join(known)}" if known
                else "no templates are stored yet: start ewfd run once with your app")
        raise CtlError(f"no workflow template {name!r} ({hint})") from None
    try:
        if store.load_queue(queue).draining:
            raise CtlError(closing_error(queue))
    except QueueNotFound:
        raise CtlError(f"no queue {queue!r} ({_known_queues(store)})") from None
    try:
        state_json = codec.encode_state(dict(state or {}), max_state_size)
    except StateError as exc:
        raise CtlError(f"--state: {exc}", EXIT_USAGE) from None
    store.create_workflow(wf, state_json)
    return wf.uuid


RETRYABLE = (WorkflowStatus.FAILED, WorkflowStatus.CANCELLED)     # what retry applies to
CANCELLABLE = (WorkflowStatus.PENDING, WorkflowStatus.RUNNING)    # and cancel


def wait(store: Store, uuid: str, timeout: float | None) -> dict[str, Any]:
    """Block until the workflow is completed, failed or cancelled (woken by the store's
    change feed, as workers are); its fields and state, as ``show`` without history."""
    try:
        wf = WorkflowHandle(store, uuid, typed=False).wait(timeout)
    except TimeoutError as exc:
        raise CtlError(f"{exc}: it carries on (ewfd ctl show {uuid})", EXIT_TIMEOUT) from None
    except WorkflowNotFound:
        raise CtlError(f"workflow {uuid} is gone (pruned?)") from None
    started = wf.status != WorkflowStatus.CANCELLED or bool(store.history(uuid))
    out = workflow_dict(wf, store.load_templates(), started=started)
    out["state"] = wf.state
    return out


def _batches(uuids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(uuids), size):
        yield uuids[i:i + size]


def retry(store: Store, uuids: Sequence[str], *, batch: int = BATCH) -> Iterator[list[str]]:
    """Failed or cancelled workflows go back to pending at the step where they stopped; one
    short transaction per ``batch``. Yields the uuids each batch changed."""
    for chunk in _batches(uuids, batch):
        yield store.retry_workflows(chunk)


def cancel(store: Store, uuids: Sequence[str], *,
           batch: int = BATCH) -> Iterator[dict[str, WorkflowStatus]]:
    """Pending: cancelled at once. Running: flagged, it stops before its next step. One
    short transaction per ``batch``; yields uuid -> status after, for those that changed."""
    for chunk in _batches(uuids, batch):
        yield store.cancel_workflows(chunk)


@dataclass(frozen=True)
class Unchanged:
    """A workflow named to an action that left it as it was, and why; ``refused`` when the
    action does not apply (exit 1), not when it was already done."""

    uuid: str
    status: str
    reason: str
    refused: bool

    def as_dict(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "status": self.status, "reason": self.reason}


def why_unchanged(store: Store, action: str, uuids: Sequence[str]) -> list[Unchanged]:
    """Why ``action`` (retry or cancel) changed none of ``uuids``, read back after it."""
    found: list[Unchanged] = []
    for uuid in uuids:
        try:
            status = store.load_workflow(uuid, typed=False).status
        except WorkflowNotFound:
            found.append(Unchanged(uuid, "missing", f"workflow {uuid} is gone", True))
            continue
        if action == "retry":
            found.append(Unchanged(uuid, status, f"workflow {uuid} is {status}: only failed "
                                   "or cancelled workflows can be retried", True))
        elif status == WorkflowStatus.RUNNING:
            found.append(Unchanged(uuid, status, f"workflow {uuid} is already cancelling: it "
                                   "stops before its next step", False))
        elif status == WorkflowStatus.CANCELLED:
            found.append(Unchanged(uuid, status, f"workflow {uuid} is already cancelled",
                                   False))
        else:
            found.append(Unchanged(uuid, status, f"workflow {uuid} is already {status}: "
                                   "nothing to cancel", True))
    return found


def set_paused(store: Store, queue: str, paused: bool) -> dict[str, Any]:
    try:
        changed = store.set_paused(queue, paused)
    except QueueNotFound:
        raise CtlError(f"no queue {queue!r} ({_known_queues(store)})") from None
    return {"changed": int(changed), "queue": queue, "paused": paused}


def prunable(store: Store, *, older_than: float,
             statuses: Sequence[WorkflowStatus]) -> tuple[float, int]:
    """(cutoff epoch, how many workflows a prune would delete)."""
    cutoff = time.time() - older_than
    return cutoff, store.count_prunable(older_than=cutoff, statuses=statuses)


def prune(store: Store, *, cutoff: float, statuses: Sequence[WorkflowStatus],
          batch: int = BATCH) -> Iterator[int]:
    """Delete in short transactions; yields the count of each batch (for a progress bar)."""
    yield from store.prune(older_than=cutoff, statuses=statuses, batch=batch)


def _defined_by_config(name: str, spec: QueueSpec | None, config: Config | None) -> str | None:
    """Where a queue is defined when a config owns it (the store knows, or the config ctl
    read names it), else None: its settings are changed there, not here. One a reload
    removed from its config (it drains) is nobody's: ctl may take it over."""
    if spec is not None and spec.origin == "config" and not spec.draining:
        return spec.defined_in or "the daemon's config"
    if config is not None and name in config.queues:
        return config.queues[name].source
    return None


def _refuse_configured(name: str, where: str, action: str, then: str = "") -> CtlError:
    if where == BUILT_IN:       # ewfd run found no config file: there is nothing to edit
        return CtlError(f"queue {name} is defined in {where} (ewfd run found no config "
                        f"file): to {action.removesuffix(' it')} it, write a config "
                        "(`ewfd init`) and restart ewfd with --config")
    if where.startswith("ewfd run"):
        return CtlError(f"queue {name} is defined by {where}: {action} on that command line "
                        f"and restart ewfd{then}")
    return CtlError(f"queue {name} is defined in {where}: {action} there and reload the "
                    f"daemon (SIGHUP, or systemctl reload ewfd){then}; what ewfd ctl wrote "
                    "would not last")


def create_queue(store: Store, name: str, settings: Mapping[str, Any], *,
                 config: Config | None = None) -> dict[str, Any]:
    """Create a queue, or update the settings given of an existing one (others are kept).
    Refused for a queue the daemon's config defines: its config is the one source of truth.
    A queue that was draining is open again."""
    if not QUEUE_NAME_RE.fullmatch(name):
        raise CtlError(f"queue name {name!r}: use 1-64 letters, digits, '_', '.' or '-'",
                       EXIT_USAGE)
    try:
        spec: QueueSpec | None = store.load_queue(name)
    except (QueueNotFound, InvalidRow):   # a row nobody can use is replaced, as if new
        spec = None
    where = _defined_by_config(name, spec, config)
    if where is not None:
        raise _refuse_configured(name, where, "edit it")
    try:
        new = replace(spec or QueueSpec(name), origin="ctl", defined_in=None, **settings)
    except ValueError as exc:
        raise CtlError(str(exc), EXIT_USAGE) from None
    store.save_queue(new)
    reopened = spec is not None and spec.draining and store.set_draining(name, False)
    keys = ("workers", "poll_interval", "lease", "max_crashes", "max_tasks_per_worker",
            "max_memory")
    changed = spec is None or reopened or any(   # whose settings they are is no change
        getattr(new, k) != getattr(spec, k) for k in config_queues.SETTINGS
        if k not in ("origin", "defined_in"))
    return {"changed": int(changed), "queue": name, "created": spec is None,
            "reopened": bool(reopened), **{k: getattr(new, k) for k in (*keys, "paused")}}


def close_queue(store: Store, name: str, *, force: bool = False, drain: bool = False,
                cancel_pending: bool = False, config: Config | None = None) -> dict[str, Any]:
    """Remove a queue. One that holds no unfinished workflow goes at once. Otherwise:
    ``drain`` takes no new work and lets the daemon close it once what it holds has run
    (``cancel_pending`` cancels its pending workflows first: only the running ones finish);
    ``force`` removes it now (its pending workflows then fail with "unknown queue").
    Refused for a queue the daemon's config defines."""
    try:
        spec = store.load_queue(name)
    except QueueNotFound:
        raise CtlError(f"no queue {name!r} ({_known_queues(store)})") from None
    where = _defined_by_config(name, spec, config)
    if where is not None:
        raise _refuse_configured(name, where, "remove it",
                                 ", which then drains and closes it")
    cancelled = 0
    if cancel_pending:
        pending = store.find_uuids(WorkflowQuery(queues=(name,),
                                                 statuses=(WorkflowStatus.PENDING,)))
        cancelled = sum(len(changed) for changed in cancel(store, pending))
    stats = next((s for s in store.queue_stats() if s["queue"] == name), None) or {}
    pending_n, running_n = stats.get("pending", 0), stats.get("running", 0)
    result = {"changed": 1, "queue": name, "closed": True, "draining": False,
              "pending": pending_n, "running": running_n, "cancelled": cancelled,
              "resumed": False}
    if (pending_n or running_n) and (drain or cancel_pending):
        result["resumed"] = spec.paused and store.set_paused(name, False)
        store.set_draining(name, True)
        return {**result, "closed": False, "draining": True}
    if (pending_n or running_n) and not force:
        raise CtlError(
            f"queue {name!r} has {pending_n} pending and {running_n} running workflows, which "
            f"would fail with 'unknown queue': `ewfd ctl close-queue {name} --drain` runs them "
            "and closes it once they are done (--cancel-pending cancels the pending ones "
            "first), --force closes it now")
    try:
        store.delete_queue(name)
    except QueueNotFound:
        raise CtlError(f"no queue {name!r} ({_known_queues(store)})") from None
    return result


# -- processes -----------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkersReport:
    """What the supervisor last published, checked against the live processes."""

    rows: list[dict[str, Any]]
    running: bool               # the supervisor that wrote the runtime file is alive
    note: str | None            # why not, for people
    updated_at: float | None    # epoch time of the supervisor's last report
    runtime_path: str


def workers(target: Target, *, sample: float = 0.2) -> WorkersReport:
    """Supervisor and workers from the runtime file next to the database, with RSS and CPU
    (sampled over ``sample`` seconds). A file left by a dead supervisor reads as all dead."""
    path = runtime.path_for(target.database)
    data = runtime.read(path)
    if data is None:
        return WorkersReport([], False, f"supervisor not running (no runtime file {path})",
                             None, path)
    found = data.get("supervisor")
    sup: dict[str, Any] = found if isinstance(found, dict) else {}
    owner = str(sup.get("identity") or "")
    sup_pid = _as_int(sup.get("pid"))
    running, note = True, None
    if sup_pid is None or identity.is_dead(owner):
        running, note = False, f"supervisor not running (pid {sup_pid} is gone)"
    elif owner.partition(":")[0] != socket.gethostname():
        note = f"supervisor runs on host {owner.partition(':')[0]}: no process details here"
    rows = [{"pid": sup_pid, "role": "supervisor", "queue": None,
             "state": "running" if running else "dead", "workflow_uuid": None, "step": None,
             "tasks": None, "started_at": _epoch_iso(sup.get("started_at")), "progress": None,
             "progress_message": None}]
    for w in data.get("workers") or []:
        if isinstance(w, dict):
            rows.append({"pid": _as_int(w.get("pid")), "role": "worker", "queue": w.get("queue"),
                         "state": w.get("state"), "workflow_uuid": w.get("workflow_uuid"),
                         "step": w.get("step"), "tasks": w.get("tasks"), "started_at": None,
                         "progress": w.get("progress"),
                         "progress_message": w.get("progress_message")})
    local = running and note is None
    _measure(rows, sup_pid if local else None, sample)
    if running and not local:
        for row in rows:
            row["alive"] = None     # another host's processes: unknown from here
    updated = data.get("updated_at")
    return WorkersReport(rows, running, note,
                         float(updated) if isinstance(updated, int | float) else None, path)


def _measure(rows: list[dict[str, Any]], sup_pid: int | None, sample: float) -> None:
    """Fill alive, rss_bytes and cpu_percent; a worker counts only while its parent is ours."""
    procs: dict[int, psutil.Process] = {}
    for row in rows:
        pid = row["pid"]
        try:
            if sup_pid is not None and pid is not None:
                proc = psutil.Process(pid)
                mine = row["role"] == "supervisor" or proc.ppid() == sup_pid
                if mine and proc.status() != psutil.STATUS_ZOMBIE:
                    proc.cpu_percent(None)
                    procs[pid] = proc
        except psutil.Error:
            pass
        row.update(alive=pid in procs, rss_bytes=None, cpu_percent=None)
    if procs and sample > 0:
        time.sleep(sample)
    for row in rows:
        proc = procs.get(row["pid"])
        if proc is None:
            continue
        try:
            with proc.oneshot():
                row.update(rss_bytes=proc.memory_info().rss,
                           cpu_percent=round(proc.cpu_percent(None), 1))
        except psutil.Error:
            row["alive"] = False


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _epoch_iso(value: Any) -> str | None:
    if not isinstance(value, int | float):
        return None
    return iso(datetime.fromtimestamp(value, UTC))
