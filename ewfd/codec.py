"""State <-> JSON, with typed values that survive a reload.

State is a JSON object. Dataclasses marked with :func:`state_type` (and
``datetime``/``date`` values) are stored as tagged objects and come back as
instances of their class when a workflow is loaded, so a step that put a
``Person`` in the state finds a ``Person`` there after a crash and resume.
Only marked classes are rebuilt: a tag naming anything else stays a dict.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from datetime import date, datetime
from typing import Any, TypeVar

from . import interruptions
from .errors import StateError

TYPE_KEY = "__ewfd_type__"
_MARK = "__ewfd_state_type__"
T = TypeVar("T", bound=type)


def state_type(cls: T) -> T:
    """Mark a dataclass as a state value that is rebuilt as ``cls`` on load."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"@state_type needs a dataclass, got {cls!r}")
    setattr(cls, _MARK, True)
    return cls


def _default(value: Any) -> Any:
    cls = type(value)
    if getattr(cls, _MARK, False) and dataclasses.is_dataclass(value):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {TYPE_KEY: f"{cls.__module__}:{cls.__qualname__}", **fields}
    if isinstance(value, datetime):
        return {TYPE_KEY: "datetime", "value": value.isoformat()}
    if isinstance(value, date):
        return {TYPE_KEY: "date", "value": value.isoformat()}
    if dataclasses.is_dataclass(value):
        raise TypeError(
            f"dataclass {cls.__qualname__} is not marked with @ewfd.state_type")
    raise TypeError(f"Object of type {cls.__qualname__} is not JSON serializable")


_encoder = json.JSONEncoder(default=_default, allow_nan=False, separators=(",", ":"),
                            ensure_ascii=False)


def _hook(obj: dict[str, Any]) -> Any:
    tag = obj.get(TYPE_KEY)
    if tag is None:
        return obj
    if tag == "datetime":
        return datetime.fromisoformat(obj["value"])
    if tag == "date":
        return date.fromisoformat(obj["value"])
    if not isinstance(tag, str) or ":" not in tag:
        return obj
    module, _, qualname = tag.partition(":")
    try:
        target: Any = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        return obj
    if not getattr(target, _MARK, False):
        return obj
    fields = {k: v for k, v in obj.items() if k != TYPE_KEY}
    return target(**fields)


def encode_state(state: dict[str, Any], max_size: int = 0) -> str:
    """Encode state; on failure raise :class:`StateError` naming the key at fault."""
    if not isinstance(state, dict):
        raise StateError(f"state must be a dict, got {type(state).__name__}")
    try:
        text = _encoder.encode(state)
    except (TypeError, ValueError) as exc:
        raise StateError(_find_bad_key(state, exc)) from exc
    if max_size and len(text) > max_size and len(text.encode()) > max_size:
        largest = max(state, key=lambda k: len(_encoder.encode(state[k])))
        raise StateError(
            f"state is {len(text.encode())} bytes encoded, over the {max_size} byte limit "
            f"(largest key: {largest!r})")
    return text


def _find_bad_key(state: dict[str, Any], exc: Exception) -> str:
    for key, value in state.items():
        if not isinstance(key, str):
            return f"state key {key!r}: keys must be strings"
        try:
            _encoder.encode(value)
        except (TypeError, ValueError) as inner:
            return f"state[{key!r}]: {inner}"
    return f"state: {exc}"


def decode_state(text: str | None) -> dict[str, Any]:
    """Decode stored state, rebuilding marked dataclasses; raise StateError if not an object."""
    if text is None or text == "":
        return {}
    try:
        value = json.loads(text, object_hook=_hook)
    except RecursionError:
        raise StateError("state is nested too deeply to decode") from None
    except (ValueError, TypeError) as exc:
        raise StateError(f"state is not valid JSON: {exc}") from exc
    except BaseException as exc:   # a state type's own code raised (SystemExit, say)
        if not interruptions.is_step_failure(exc):
            raise
        raise StateError(f"state could not be rebuilt: {type(exc).__name__}: {exc}") from exc
    if not isinstance(value, dict):
        raise StateError(f"state must be a JSON object, got {type(value).__name__}")
    return value


def decode_raw(text: str | None) -> Any:
    """Plain JSON decode, no classes rebuilt (for tools that must not import app code)."""
    return None if text is None else json.loads(text)
