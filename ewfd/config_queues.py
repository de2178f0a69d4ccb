"""The queues a config defines, in the store; and draining queues, closed once empty.

The config file (or ``ewfd run --queue``) is the one source of truth for the queues it
names. The supervisor writes them to the store at start and at each reload, stamped
``origin="config"`` with the file that defines them (so ``ewfd ctl`` can refuse to change
them and say where to), writes them back when something else changed them (the API, a
hand-edited row), and drains a queue a reload removed from the config. A draining queue
(``ewfd ctl close-queue --drain``) takes no new work: rows added later are rejected, and
the queue is closed once it holds nothing pending or running.
"""

from __future__ import annotations

from typing import Any

from .config import Config, QueueConfig
from .model import QueueSpec
from .store.base import Store

#: The fields of a queue the config sets; the rest (paused, draining) is run-time state.
SETTINGS = ("workers", "poll_interval", "lease", "max_crashes", "max_tasks_per_worker",
            "max_memory", "auto_delete", "delete_after", "pop_timeout", "origin", "defined_in")


def config_spec(qc: QueueConfig, stored: QueueSpec | None = None) -> QueueSpec:
    """The queue as the config defines it, with the run-time state it has in the store."""
    return QueueSpec(qc.name, workers=qc.workers, poll_interval=qc.poll_interval,
                     lease=qc.lease, max_crashes=qc.max_crashes,
                     max_tasks_per_worker=qc.max_tasks_per_worker, max_memory=qc.max_memory,
                     paused=stored.paused if stored else False,
                     draining=stored.draining if stored else False,
                     origin="config", defined_in=qc.source)


def _differences(stored: QueueSpec, wanted: QueueSpec) -> dict[str, Any]:
    return {k: getattr(stored, k) for k in SETTINGS if getattr(stored, k) != getattr(wanted, k)}


def store_config_queues(store: Store, config: Config,
                        previous: Config | None = None) -> dict[str, str]:
    """Write the config's queues (a paused flag set with ``ewfd ctl pause`` survives; one
    draining is reopened, the config wants it). With ``previous`` (a reload), a configured
    queue the new config no longer has starts draining. Returns queue -> why it drains."""
    stored = {q.name: q for q in store.load_queues()}
    for qc in config.queues.values():
        spec = stored.get(qc.name)
        store.save_queue(config_spec(qc, spec))
        if spec is not None and spec.draining:
            store.set_draining(qc.name, False)
    draining: dict[str, str] = {}
    for name, qc in (previous.queues if previous else {}).items():
        spec = stored.get(name)
        if name not in config.queues and spec is not None and spec.origin == "config":
            store.set_draining(name, True)
            draining[name] = f"removed from {qc.source}"
    return draining


def enforce(store: Store, config: Config, stored: dict[str, QueueSpec],
            log: Any) -> dict[str, QueueSpec]:
    """``stored`` with every configured queue as the config has it: one that something
    else changed or closed (the API, SQL) is written back (``queue.config_wins``), so what
    ``ewfd ctl queues`` shows is what runs."""
    out = dict(stored)
    for name, qc in config.queues.items():
        spec = stored.get(name)
        wanted = config_spec(qc, spec)
        changed = _differences(spec, wanted) if spec is not None else {"closed": True}
        if changed:
            store.save_queue(wanted)
            kept = {k: getattr(wanted, k) for k in (changed if spec else ("workers",))}
            log.warning("queue.config_wins", queue=name, defined_in=qc.source, found=changed,
                        kept=kept)
            out[name] = wanted
    return out


def close_drained(store: Store, draining: list[str], log: Any) -> list[str]:
    """Reject what was added to draining queues, and close those left empty."""
    for uuid, error in store.reject_new_on_draining():
        log.error("job.rejected", workflow_uuid=uuid, error=error)
    closed = [name for name in draining if store.close_drained(name)]
    for name in closed:
        log.info("queue.closed", queue=name, reason="drained")
    return closed
