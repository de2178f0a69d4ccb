"""The runtime file: what a running supervisor publishes for ``ewfd ctl workers``.

A small JSON document next to the database, replaced atomically; readers check
the supervisor's pid and identity, so the file of a dead supervisor reads as dead.
"""

from __future__ import annotations

import json
import os
from typing import Any


def path_for(database: str) -> str:
    return f"{database}.workers.json"


def write(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)   # like the database
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def read(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
