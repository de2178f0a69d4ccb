"""The ``store`` fixture shared by the integration tests that run on every store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ewfd.store.base import Store
from ewfd.store.memory import MemoryStore
from ewfd.store.sqlite import SQLiteStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of each kind: a MemoryStore, and a SQLiteStore on a real file."""
    s: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "ewfd.db")
    try:
        yield s
    finally:
        s.close()
