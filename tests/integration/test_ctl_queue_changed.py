"""``ewfd ctl create-queue`` on an existing queue says whether it changed anything, for
every setting it takes (auto-delete and delete-after too)."""

from __future__ import annotations

from typing import Any

import pytest

from ewfd import control
from ewfd.store.memory import MemoryStore


@pytest.mark.parametrize("settings", [{"auto_delete": True}, {"delete_after": 60.0},
                                      {"workers": 3}, {"pop_timeout": 5.0}])
def test_an_update_of_any_setting_is_a_change(settings: dict[str, Any]) -> None:
    store = MemoryStore()
    assert control.create_queue(store, "q", {})["created"]
    result = control.create_queue(store, "q", settings)
    assert result["changed"] == 1
    assert all(getattr(store.load_queue("q"), k) == v for k, v in settings.items())
    assert control.create_queue(store, "q", settings)["changed"] == 0
