"""Loading the user's app: ``module:attribute`` naming an :class:`Engine`."""

from __future__ import annotations

import importlib
import os
import sys

from .engine import Engine


class AppError(Exception):
    """The app could not be imported, or is not an Engine."""


def load_app(spec: str) -> Engine:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise AppError(f"expected \"module:attribute\", got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AppError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    target: object = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(target, Engine):
        raise AppError(f"{spec} is a {type(target).__name__}, not an ewfd.Engine")
    return target
