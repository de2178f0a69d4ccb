"""The test tree itself: pytest imports test modules by basename (no packages, so that
modules can import their layer's helpers), so two modules of one name in different layers
break collection of the whole suite, and only a full run would show it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_every_test_module_has_a_basename_of_its_own() -> None:
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name != "conftest.py")
    assert [n for n, count in names.items() if count > 1] == []
