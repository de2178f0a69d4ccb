"""ewfd: durable workflows for Python, embedded or as a daemon.

A re-make of the Go EWF framework: register activities and workflow
templates on an :class:`Engine`; each workflow's state is saved after every
step, so an interrupted workflow resumes where it stopped.
"""

from . import backoff
from .codec import state_type
from .context import StepContext
from .engine import Engine
from .errors import (
    ActivityNotFound,
    EwfdError,
    FailWorkflowNow,
    LeaseLost,
    QueueNotFound,
    StateError,
    StepTimeout,
    StoreError,
    TemplateNotFound,
    WorkflowFailed,
    WorkflowNotFound,
)
from .handle import WorkflowHandle
from .model import QueueSpec, RetryPolicy, Step, Workflow, WorkflowStatus, WorkflowTemplate
from .store import MemoryStore, SQLiteStore, Store

__version__ = "0.1.0"

__all__ = [
    "ActivityNotFound",
    "Engine",
    "EwfdError",
    "FailWorkflowNow",
    "LeaseLost",
    "MemoryStore",
    "QueueNotFound",
    "QueueSpec",
    "RetryPolicy",
    "SQLiteStore",
    "StateError",
    "Step",
    "StepContext",
    "StepTimeout",
    "Store",
    "StoreError",
    "TemplateNotFound",
    "Workflow",
    "WorkflowFailed",
    "WorkflowHandle",
    "WorkflowNotFound",
    "WorkflowStatus",
    "WorkflowTemplate",
    "backoff",
    "state_type",
]
