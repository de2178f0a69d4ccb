"""Values <-> stored text: state as JSON with typed values, and the one rule for text.

State is a JSON object. Dataclasses marked with :func:`state_type` (and
``datetime``/``date`` values) are stored as tagged objects and come back as
instances of their class when a workflow is loaded, so a step that put a
``Person`` in the state finds a ``Person`` there after a crash and resume.
A tag resolves only through the registry :func:`state_type` fills: stored
data can never make a process import a module or build any other class; a
tag naming anything else is a :class:`StateError` (the job fails, saying so).

Text that is not valid UTF-8 (a lone surrogate: a JSON ``\\ud83d`` escape, or a
file name of other bytes as ``os.listdir`` returns it) follows one rule here:

- **JSON values** (state, metadata) are stored and read back exactly: lone
  surrogates are written as JSON escapes, everything else as it is.
- **Names and labels** stored as plain text (template, step, activity and queue
  names, ``display_name``, ``ewfd ctl`` arguments) are refused up front by
  :func:`check_text`, with an error naming the field.
- **Texts ewfd writes about what happened** (error texts, log lines, a step's
  printed output, what ``ewfd ctl`` prints) are escaped with :data:`TEXT_ERRORS`
  (``\\udcff``, ``\\xff``), so they never fail; inside JSON the escape reads back
  as the same string.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from typing import Any, TypeVar

from . import interruptions
from .errors import StateError

TYPE_KEY = "__ewfd_type__"
TEXT_ERRORS = "backslashreplace"   # the error handler of every text stream ewfd writes
_TAG_TEXT = f'"{TYPE_KEY}"'
_TYPES: dict[str, type] = {}       # tag -> class, filled by @state_type only
T = TypeVar("T", bound=type)


# -- the rule for text ----------------------------------------------------------------------
def _bad_position(text: str) -> int | None:
    """Where ``text`` holds a lone surrogate (UTF-8 cannot encode it), or None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def check_text(value: str, what: str) -> str:
    """``value`` if it can be stored as text; else ValueError naming ``what`` (a name or a
    label must be refused where it comes in, not crash the write that stores it)."""
    if not isinstance(value, str):
        raise ValueError(f"{what}: expected text, got {type(value).__name__}")
    position = _bad_position(value)
    if position is not None:
        raise ValueError(f"{what} {value!r} is not valid UTF-8 text (a lone surrogate at "
                         f"position {position}): use text that UTF-8 can encode")
    return value


def safe_text(text: str) -> str:
    """``text`` with what UTF-8 cannot hold escaped (``\\udcff``): for error texts and
    anything else ewfd writes about what happened, which must never fail to be written."""
    if _bad_position(text) is None:
        return text
    return text.encode("utf-8", TEXT_ERRORS).decode("utf-8")


def safe_bytes(data: bytes) -> str:
    """Bytes a step printed, as text: what is not UTF-8 is escaped (``\\xff``)."""
    return data.decode("utf-8", TEXT_ERRORS)


# -- typed state --------------------------------------------------------------------------
def state_type(cls: T) -> T:
    """Mark a dataclass as a state value that is rebuilt as ``cls`` on load."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"@state_type needs a dataclass, got {cls!r}")
    _TYPES[_tag(cls)] = cls    # a redefinition (a reloaded module) replaces the old class
    return cls


def _tag(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _default(value: Any) -> Any:
    cls = type(value)
    if _TYPES.get(_tag(cls)) is cls:   # registered itself (a subclass is not)
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {TYPE_KEY: _tag(cls), **fields}
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
_escaping = json.JSONEncoder(default=_default, allow_nan=False, separators=(",", ":"))


def _hook(obj: dict[str, Any]) -> Any:
    tag = obj.get(TYPE_KEY)
    if tag is None:
        return obj
    fields = {k: v for k, v in obj.items() if k != TYPE_KEY}
    try:
        if tag == "datetime":
            return datetime.fromisoformat(obj["value"])
        if tag == "date":
            return date.fromisoformat(obj["value"])
        cls = _TYPES.get(tag) if isinstance(tag, str) else None
        if cls is None:
            known = ", ".join(sorted(_TYPES)[:10]) or "none"
            raise StateError(f"state holds a value tagged {tag!r}, which names no class "
                             f"registered with @ewfd.state_type in this process (registered: "
                             f"{known})")
        return cls(**fields)
    except StateError:
        raise
    except Exception as exc:
        raise StateError(f"state value tagged {tag!r}: {exc}") from exc


def encode_state(state: dict[str, Any], max_size: int = 0) -> str:
    """Encode state so that it reads back exactly; on failure raise :class:`StateError`
    naming the key at fault."""
    if not isinstance(state, dict):
        raise StateError(f"state must be a dict, got {type(state).__name__}")
    try:
        text = _encoder.encode(state)
    except (TypeError, ValueError) as exc:
        raise StateError(_find_bad_key(state, exc)) from exc
    if _bad_position(text) is not None:   # lone surrogates: the same JSON, with escapes
        text = _escaping.encode(state)
    if _TAG_TEXT in text:   # a tag this encoder did not write must not reach a decoder
        _check_tags(state, text)
    if max_size and len(text) > max_size and len(text.encode()) > max_size:
        largest = max(state, key=lambda k: len(_escaping.encode(state[k])))
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


def _check_tags(state: dict[str, Any], text: str) -> None:
    try:
        decode_state(text)
    except StateError as exc:
        for key, value in state.items():
            try:
                decode_state(_escaping.encode({"v": value}))
            except StateError as inner:
                raise StateError(f"state[{key!r}]: {inner}") from None
        raise StateError(f"state: {exc}") from None


def decode_state(text: str | None) -> dict[str, Any]:
    """Decode stored state, rebuilding marked dataclasses; raise StateError if not an object."""
    if text is None or text == "":
        return {}
    try:
        value = json.loads(text, object_hook=_hook)
    except RecursionError:
        raise StateError("state is nested too deeply to decode") from None
    except StateError:
        raise
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
