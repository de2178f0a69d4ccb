"""The Engine: registers activities and templates, and runs workflows in this process.

It knows nothing of processes or SQL: it talks to a :class:`Store`, and the
daemon's workers reuse its registry and :mod:`ewfd.runner` to run what they
claim. An engine made without a store keeps workflows in memory only.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid as uuid_mod
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from types import MappingProxyType
from typing import Any, TypeVar

from . import codec, critical, identity, liblog, runner
from .errors import (
    ActivityNotFound,
    QueueNotFound,
    TemplateNotFound,
    WorkflowFailed,
    WorkflowNotFound,
)
from .handle import WorkflowHandle
from .model import QueueSpec, State, Workflow, WorkflowStatus, WorkflowTemplate
from .store.base import Store
from .store.memory import MemoryStore

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_MAX_STATE_SIZE = 1024 * 1024


class Engine:
    """The central registry and in-process runner of workflows."""

    def __init__(self, store: Store | None = None, *, max_state_size: int = DEFAULT_MAX_STATE_SIZE,
                 lease: float = 30.0, max_background: int = 8) -> None:
        self._store: Store = store if store is not None else MemoryStore()
        self._owns_default_store = store is None
        self._warn_on_bind = store is not None
        self._activities: dict[str, Callable[..., Any]] = {}
        self._templates: dict[str, WorkflowTemplate] = {}
        self.max_state_size = max_state_size
        self.lease = lease
        self._max_background = max_background
        self._executor: ThreadPoolExecutor | None = None
        self._keeper: _LeaseKeeper | None = None
        self._lock = threading.Lock()
        self.log = liblog.get_logger()

    # -- registry ---------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        return self._store

    @property
    def activities(self) -> Mapping[str, Callable[..., Any]]:
        return MappingProxyType(self._activities)

    @property
    def templates(self) -> Mapping[str, WorkflowTemplate]:
        return MappingProxyType(self._templates)

    def register(self, name: str, fn: Callable[..., Any]) -> None:
        """Register a step function ``fn(ctx, state)`` (sync or ``async def``) under ``name``."""
        if not callable(fn):
            raise TypeError(f"activity {name!r}: expected a callable, got {fn!r}")
        codec.check_text(name, "activity name")
        self._activities[name] = fn

    def activity(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator form of :meth:`register`; the name defaults to the function's name."""

        def decorate(fn: F) -> F:
            self.register(name or fn.__name__, fn)
            return fn

        return decorate

    def register_template(self, name: str, template: WorkflowTemplate) -> None:
        """Register a template and store its steps (not its hooks, which are code)."""
        codec.check_text(name, "template name")
        self._templates[name] = template
        if not self._owns_default_store:
            self._store.save_template(name, [s.to_dict() for s in template.steps])

    def bind(self, store: Store, *, save_templates: bool = True) -> None:
        """Attach a store (the daemon binds the app's engine to its database after fork)."""
        if self._warn_on_bind:
            self._warn_on_bind = False
            self.log.warning("engine.store_replaced",
                             error="the app's Engine opened its own store; the daemon's "
                                   "database is used instead")
        self._store = store
        self._owns_default_store = False
        if save_templates:
            self.save_templates()

    def save_templates(self) -> None:
        """Store every registered template's steps (``ewfd ctl`` reads them from there)."""
        for name, template in self._templates.items():
            self._store.save_template(name, [s.to_dict() for s in template.steps])

    # -- workflows ---------------------------------------------------------------------------
    def new_workflow(self, name: str, *, queue: str | None = None, display_name: str = "",
                     metadata: Mapping[str, str] | None = None, state: State | None = None,
                     uuid: str | None = None) -> Workflow:
        """Build (not persist) a workflow from a registered template."""
        template = self._templates.get(name)
        if template is None:
            raise TemplateNotFound(f"no template {name!r} is registered")
        for step in template.steps:
            if step.name not in self._activities:
                raise ActivityNotFound(f"template {name!r}: activity {step.name!r} "
                                       "is not registered")
        wf = Workflow(uuid=uuid or str(uuid_mod.uuid4()), name=name, state=dict(state or {}),
                      steps=list(template.steps), queue=queue, display_name=display_name,
                      metadata={str(k): str(v) for k, v in (metadata or {}).items()})
        wf.check_text()
        return wf

    def run(self, wf: Workflow, *, background: bool = False) -> Any:
        """Run ``wf``: synchronously (returns the final Workflow, raises WorkflowFailed) or,
        with ``background=True``, in a thread (returns a Future). A queued workflow is only
        stored as pending and returned at once: workers run it."""
        wf.check_text()
        encoded = codec.encode_state(wf.state, self.max_state_size)
        # The check and the insert are one store call as far as signals go: a step's timeout
        # (a step enqueueing a child) fires after both, never between them.
        with critical.section():
            try:   # already stored (a re-run of a pending workflow): run it as it is
                self._store.load_workflow(wf.uuid)
            except WorkflowNotFound:
                self._store.create_workflow(wf, encoded)
        if wf.queue is not None:
            return self._done_future(wf) if background else wf
        if background:
            return self._submit(wf.uuid)
        return self._run_now(wf.uuid)

    def enqueue(self, name: str, *, queue: str = "default", state: State | None = None,
                display_name: str = "", metadata: Mapping[str, str] | None = None,
                uuid: str | None = None) -> WorkflowHandle:
        """Store a workflow as pending on ``queue`` for workers (the daemon's, or an
        in-process :class:`~ewfd.worker.Worker`) and return a handle to wait for its outcome.

        The short form of ``run(new_workflow(..., queue=queue))``. The queue must exist
        (QueueNotFound otherwise: a row on an unknown queue would only fail later). A
        ``uuid`` already stored is not enqueued twice: its handle is returned.
        """
        try:
            self._store.load_queue(queue)
        except QueueNotFound:
            raise QueueNotFound(
                f"no queue {queue!r}: create it (engine.create_queue, ewfd ctl create-queue) "
                "or name it in the daemon's config and start ewfd run once") from None
        wf = self.new_workflow(name, queue=queue, display_name=display_name,
                               metadata=metadata, state=state, uuid=uuid)
        self.run(wf)
        return WorkflowHandle(self._store, wf.uuid)

    def handle(self, uuid: str) -> WorkflowHandle:
        """A handle on a stored workflow (enqueued here, elsewhere, or by SQL) to wait for."""
        return WorkflowHandle(self._store, uuid)

    def _done_future(self, wf: Workflow) -> Future[Workflow]:
        future: Future[Workflow] = Future()
        future.set_result(wf)
        return future

    def _submit(self, uuid: str) -> Future[Workflow]:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._max_background,
                                                    thread_name_prefix="ewfd-run")
            return self._executor.submit(self._run_now, uuid)

    def _run_now(self, uuid: str) -> Workflow:
        owner = identity.current()
        claimed = self._store.claim_workflow(uuid, owner, self.lease)
        if claimed is None:
            wf = self._store.load_workflow(uuid)
            if wf.status == WorkflowStatus.FAILED:
                raise WorkflowFailed(wf)
            return wf
        with self.leases_held(owner, self.lease):
            outcome = runner.execute(self, self._store, claimed, self.log)
        if outcome.workflow.status == WorkflowStatus.FAILED:
            raise WorkflowFailed(outcome.workflow) from outcome.error
        return outcome.workflow

    def resume_workflows(self) -> list[Future[Workflow]]:
        """Resume, in the background, every workflow with no queue that is pending, or running
        under a dead owner or an expired lease. Each is claimed with a lease first, so two
        processes resuming at once never run the same workflow. Queued ones are left to workers.
        """
        futures = []
        self._store.interrupt(expired=True, reason="lease expired")
        for item in self._store.resumable():
            if item.status == WorkflowStatus.RUNNING:
                if not identity.is_dead(item.lease_owner):
                    continue
                self._store.interrupt(owner=item.lease_owner or "", reason="process died")
            futures.append(self._submit(item.uuid))
        return futures

    def cancel(self, uuid: str) -> WorkflowStatus | None:
        """Cancel a workflow: pending ones never run, running ones stop at a step boundary."""
        return self._store.cancel_workflow(uuid)

    # -- queues ---------------------------------------------------------------------------
    def create_queue(self, name: str, *, workers: int = 1, poll_interval: float = 0.1,
                     auto_delete: bool = False, delete_after: float = 0.0,
                     pop_timeout: float = 0.0, lease: float = 30.0, max_crashes: int = 5,
                     max_tasks_per_worker: int = 0, max_memory: int = 0) -> QueueSpec:
        """Create or update a queue; the daemon starts ``workers`` processes for it."""
        spec = QueueSpec(name, workers, poll_interval, auto_delete, delete_after, pop_timeout,
                         lease, max_crashes, max_tasks_per_worker, max_memory)
        self._store.save_queue(spec)
        return spec

    def close_queue(self, name: str) -> None:
        """Remove a queue (raises QueueNotFound); its workers stop after their current job."""
        self._store.delete_queue(name)

    # -- lifecycle ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def leases_held(self, owner: str, lease: float) -> Iterator[None]:
        """While inside, a thread renews every lease ``owner`` holds, every third of ``lease``
        (what runs a workflow in-process keeps its lease alive; under ``ewfd run`` the
        supervisor renews its workers' leases instead)."""
        keeper = self._lease_keeper()
        keeper.hold(owner, lease)
        try:
            yield
        finally:
            if keeper.pid == os.getpid():   # not in a process a step forked: its copy of the
                keeper.drop(owner, lease)   # keeper's lock may be held by a thread it lacks

    def _lease_keeper(self) -> _LeaseKeeper:
        with self._lock:
            # After a fork the parent's keeper thread does not exist here: start our own.
            if self._keeper is None or self._keeper.pid != os.getpid():
                self._keeper = _LeaseKeeper(lambda: self._store)
            return self._keeper

    def close(self) -> None:
        """Wait for background runs, stop the lease keeper, close the store."""
        with self._lock:
            executor, self._executor = self._executor, None
            keeper, self._keeper = self._keeper, None
        if executor is not None:
            executor.shutdown(wait=True)
        if keeper is not None and keeper.pid == os.getpid():
            keeper.stop()
        self._store.close()


class _LeaseKeeper:
    """Renews the leases of the workflows this process runs in-process (``run``, background
    runs, ``resume_workflows``, the in-process ``Worker``) every third of the shortest lease
    held, so they lapse only when the process is gone (or so stalled that this thread
    cannot run)."""

    def __init__(self, store: Callable[[], Store]) -> None:
        self._store = store   # the engine's store at each renewal (bind may replace it)
        self.pid = os.getpid()
        self._held: dict[tuple[str, float], int] = {}   # (owner, lease) -> runs holding it
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="ewfd-lease", daemon=True)
        self._thread.start()

    def hold(self, owner: str, lease: float) -> None:
        with self._cond:
            self._held[(owner, lease)] = self._held.get((owner, lease), 0) + 1
            self._cond.notify()   # a shorter lease than before: the next renewal comes sooner

    def drop(self, owner: str, lease: float) -> None:
        with self._cond:
            self._held[(owner, lease)] -= 1
            if not self._held[(owner, lease)]:
                del self._held[(owner, lease)]

    def interval(self) -> float | None:
        """Seconds between renewals: a third of the shortest lease held; None when none is."""
        with self._cond:
            leases = [lease for _, lease in self._held]
        return min(leases) / 3 if leases else None

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                self._cond.wait(self.interval())
                if self._stopped:
                    return
                longest: dict[str, float] = {}
                for owner, lease in self._held:
                    longest[owner] = max(lease, longest.get(owner, 0.0))
            by_lease: dict[float, list[str]] = {}
            for owner, lease in longest.items():
                by_lease.setdefault(lease, []).append(owner)
            for lease, owners in by_lease.items():
                try:
                    self._store().renew_leases(owners, lease)
                except Exception as exc:   # renewal is retried next tick; never kill the thread
                    liblog.get_logger().warning("lease.renew_failed", error=str(exc))

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join()
