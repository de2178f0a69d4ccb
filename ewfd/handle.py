"""WorkflowHandle: wait, in this process or any other, for the outcome of a queued workflow.

The wait blocks in the store's ``wait_for_change`` (inotify and ``data_version``
on SQLite), the very wake-up the workers use, so it returns within milliseconds
of the commit that finished the workflow and costs no CPU meanwhile.
"""

from __future__ import annotations

import math
import time

from .errors import WorkflowFailed
from .model import State, Workflow, WorkflowStatus
from .store.base import Store

# A wait also re-reads the workflow this often: it only matters when a change
# notification is lost (an inotify queue overflow), never in the ordinary case.
FALLBACK_POLL = 10.0


class WorkflowHandle:
    """A stored workflow to wait for: what :meth:`Engine.enqueue` returns.

    Make one for any uuid with ``engine.handle(uuid)`` or ``WorkflowHandle(store, uuid)``,
    e.g. in a web request that polls a job another request enqueued. ``typed=False``
    returns the state as plain JSON values (no ``@state_type`` classes: for tools).
    """

    def __init__(self, store: Store, uuid: str, *, typed: bool = True) -> None:
        self._store = store
        self._uuid = uuid
        self._typed = typed

    @property
    def uuid(self) -> str:
        return self._uuid

    def __repr__(self) -> str:
        return f"WorkflowHandle({self._uuid!r})"

    def load(self) -> Workflow:
        """The workflow as last saved (raises WorkflowNotFound)."""
        return self._store.load_workflow(self._uuid, typed=self._typed)

    def wait(self, timeout: float | None = None) -> Workflow:
        """Block until the workflow is completed, failed or cancelled, and return it.

        ``timeout`` in seconds (None: no limit; 0: just look); raises TimeoutError when it
        passes first (the workflow carries on), WorkflowNotFound for an unknown uuid.
        """
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be None or >= 0 seconds, got {timeout!r}")
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        self._store.wait_for_change(0)   # from here on, any commit wakes the wait below
        while True:
            wf = self.load()
            if wf.status.finished:
                return wf
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"workflow {self._uuid} is still {wf.status} after "
                                   f"{timeout:g}s")
            self._store.wait_for_change(min(remaining, FALLBACK_POLL))

    def result(self, timeout: float | None = None) -> State:
        """The final state of a completed workflow; raises WorkflowFailed when it failed or
        was cancelled (``exc.workflow`` holds it), TimeoutError as :meth:`wait`."""
        wf = self.wait(timeout)
        if wf.status != WorkflowStatus.COMPLETED:
            raise WorkflowFailed(wf)
        return wf.state
