"""Stores: the protocol and its backends. Nothing outside this package writes SQL."""

from .base import Interrupted, Resumable, Store
from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = ["Interrupted", "MemoryStore", "Resumable", "SQLiteStore", "Store"]
