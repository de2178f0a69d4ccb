"""Exceptions users catch (and the few the engine raises through step code)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import Workflow


class EwfdError(Exception):
    """Base class of ewfd's own errors."""


class FailWorkflowNow(Exception):
    """Raised by a step to fail its workflow at once, with no further attempts.

    Found anywhere in an exception's ``__cause__``/``__context__`` chain, so a
    step may wrap it in its own exception type.
    """


class StepTimeout(BaseException):
    """Raised inside a sync step that overran its timeout.

    A ``BaseException`` so that ``except Exception`` in step code does not
    swallow the interruption.
    """


class WorkflowFailed(EwfdError):
    """``engine.run`` of a workflow that ended ``failed``; ``__cause__`` is the step's exception."""

    def __init__(self, workflow: Workflow) -> None:
        super().__init__(f"workflow {workflow.name} {workflow.uuid} failed: {workflow.error}")
        self.workflow = workflow


class WorkflowNotFound(EwfdError, LookupError):
    """No workflow with that uuid in the store."""


class TemplateNotFound(EwfdError, LookupError):
    """No template registered under that name."""


class ActivityNotFound(EwfdError, LookupError):
    """A template names a step whose activity is not registered."""


class QueueNotFound(EwfdError, LookupError):
    """No queue with that name."""


class StateError(EwfdError):
    """A step left state that cannot be stored (not JSON-encodable, or over the size limit)."""


class StoreError(EwfdError):
    """The store could not complete an operation (disk full, I/O error, locked too long)."""


class DatabaseLost(StoreError):
    """The file at the database's path is not the file the store opened: it was deleted, or
    replaced by another file. Writes are refused (they would land in a file nobody reads)
    and the daemon stops rather than carry on or create a new, empty database."""


class DatabaseInUse(StoreError):
    """Another ``ewfd run`` already serves this database: one supervisor per SQLite file
    (two would fight over the configured queues and hide each other's workers)."""


class InvalidRow(StoreError):
    """A row written by hand holds a value ewfd cannot use; the message names the column."""


class SchemaTooNew(StoreError):
    """The database was written by a newer ewfd; refusing to touch it."""


class LeaseLost(EwfdError):
    """A fenced write changed nothing: another worker owns the workflow now."""
