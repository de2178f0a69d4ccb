"""Loading the user's app: ``module:attribute`` naming an :class:`Engine`.

The directories of ``app_path`` (by default the config file's own directory) go first on
``sys.path``, so a plain ``shop.py`` next to ``ewfd.toml`` is found wherever ``ewfd run``
is started from, and a directory of the same name in the current directory cannot stand
in for it. A failed import says where it looked and, when the wrong thing was imported,
what that was.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from .engine import Engine


class AppError(Exception):
    """The app could not be imported, or is not an Engine."""


def load_app(spec: str, search: Sequence[Path] = ()) -> Engine:
    """Import ``spec`` with the ``search`` directories first on ``sys.path``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise AppError(f"expected \"module:attribute\", got {spec!r}")
    dirs = list(dict.fromkeys(os.fspath(d) for d in search))
    sys.path[:] = dirs + [p for p in sys.path if p not in dirs]   # ours first, once each
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AppError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
                       f"{_searched(dirs, exc)}") from exc
    target: object = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppError(f"module {module_name!r} ({_origin(module)}) has no attribute "
                           f"{attr!r}{_searched(dirs)}") from None
    if not isinstance(target, Engine):
        raise AppError(f"{spec} is a {type(target).__name__}, not an ewfd.Engine")
    return target


def _searched(dirs: list[str], exc: Exception | None = None) -> str:
    if exc is not None and not isinstance(exc, ModuleNotFoundError):
        return ""   # it was found, and failed while importing: the error says why
    if not dirs:
        return " (searched sys.path)"
    return (f" (searched {', '.join(dirs)} first: set app_path in the config to the "
            "directory that holds it; then sys.path)")


def _origin(module: ModuleType) -> str:
    """Where a module came from, for people: its file, or the directory taken for it."""
    if getattr(module, "__file__", None):
        return str(module.__file__)
    places = list(getattr(module, "__path__", []))
    if places:
        return f"the directory {places[0]}, a namespace package: it has no __init__.py"
    return "a built-in module"
