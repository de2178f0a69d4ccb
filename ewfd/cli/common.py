"""What every ``ewfd ctl`` subcommand shares: the database options, parameter types,
and the mapping of failures to one ``ewfd: ...`` line and the contract's exit codes."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from .. import codec, control
from ..config import CONFIG_SEARCH, parse_duration, parse_size
from ..errors import EwfdError
from ..store.base import Store

F = TypeVar("F", bound=Callable[..., Any])


if TYPE_CHECKING:
    _ParamType = click.ParamType[Any, Any]
else:   # click < 8.2 has no type parameters
    _ParamType = click.ParamType


class Failure(click.ClickException):
    """One line on stderr, prefixed ``ewfd:``; exit 1 (not found, does not apply, failed)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"ewfd: {self.format_message()}", err=True)


class UsageFailure(Failure):
    """The same for bad input found past argument parsing: exit 2."""

    exit_code = control.EXIT_USAGE


class TimedOut(Failure):
    """A wait that gave up (``enqueue --wait --timeout``): exit 124, as timeout(1)."""

    exit_code = control.EXIT_TIMEOUT


def failure(message: str, exit_code: int = control.EXIT_FAILED) -> Failure:
    kinds = {control.EXIT_USAGE: UsageFailure, control.EXIT_TIMEOUT: TimedOut}
    return kinds.get(exit_code, Failure)(message)


class CtlGroup(click.Group):
    """Turns the errors of :mod:`ewfd.control` and the store into :class:`Failure`, and
    refuses arguments that are not text before any command runs."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if cmd.callback is not None:
            cmd.callback = _text_checked(cmd, cmd.callback)
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except control.CtlError as exc:
            raise failure(str(exc), exc.exit_code) from None
        except EwfdError as exc:    # StoreError and friends: the database misbehaved
            raise Failure(str(exc)) from None


def _text_checked(cmd: click.Command, callback: Callable[..., Any]) -> Callable[..., Any]:
    """``callback`` run only when every text argument can be stored as text (the codec's
    rule): bytes that are not UTF-8 in a name, a uuid or a label are a usage error, not a
    traceback from the database. Paths may be any bytes the file system allows; ``--state``
    and ``--meta`` are stored as JSON, exactly."""
    checked = [p for p in cmd.params if p.name not in _PATHS
               and not isinstance(p.type, JsonObject | KeyValue)]

    @functools.wraps(callback)
    def run(**kwargs: Any) -> Any:
        ctx = click.get_current_context()
        for param in checked:
            value = kwargs.get(param.name or "")
            for text in value if isinstance(value, tuple) else (value,):
                if isinstance(text, str):
                    try:
                        codec.check_text(text, param.get_error_hint(ctx))
                    except ValueError as exc:
                        raise UsageFailure(str(exc)) from None
        return callback(**kwargs)

    return run


_PATHS = frozenset({"config_path", "db_path", "log_path"})


@dataclass(frozen=True)
class Globals:
    """``--config``, ``--db`` and ``--json`` given before the subcommand (``ewfd ctl --db X
    workflows``); the same options after it win."""

    config_path: str | None = None
    db_path: str | None = None
    as_json: bool = False


def global_options(fn: F) -> F:
    """The target options on the ``ctl`` group itself, kept in ``ctx.obj`` for subcommands."""
    @functools.wraps(fn)
    def keep(*args: Any, config_path: str | None, db_path: str | None, as_json: bool,
             **kwargs: Any) -> Any:
        click.get_current_context().obj = Globals(config_path, db_path, as_json)
        return fn(*args, **kwargs)

    return _options(keep)   # type: ignore[return-value]


def target_options(fn: F) -> F:
    """``--config``, ``--db`` and ``--json``, which every subcommand takes, after it or (see
    :func:`global_options`) before it."""
    @functools.wraps(fn)
    def merged(*args: Any, config_path: str | None, db_path: str | None, as_json: bool,
               **kwargs: Any) -> Any:
        given = click.get_current_context().find_object(Globals) or Globals()
        return fn(*args, config_path=given.config_path if config_path is None else config_path,
                  db_path=given.db_path if db_path is None else db_path,
                  as_json=as_json or given.as_json, **kwargs)

    return _options(merged)   # type: ignore[return-value]


def _options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--json", "as_json", is_flag=True,
                      help="Print JSON for scripts instead of text.")(fn)
    fn = click.option("--db", "db_path", metavar="PATH",
                      help="The SQLite database, instead of finding it through the config.")(fn)
    fn = click.option("--config", "config_path", metavar="PATH",
                      help=f"The daemon's config file. Default: {CONFIG_SEARCH}.")(fn)
    return fn


def target(config_path: str | None, db_path: str | None) -> control.Target:
    if config_path is not None and db_path is not None:
        raise click.UsageError("pass --config or --db, not both")
    return control.locate(config_path, db_path)


@contextmanager
def opened(found: control.Target, *, write: bool = False) -> Iterator[Store]:
    """The store, read-only unless ``write``, closed at the end of the block."""
    store = control.open_store(found, write=write)
    try:
        yield store
    finally:
        store.close()


# -- asking first, and progress (prune, retry and cancel by filter) ---------------------------
PROGRESS_MIN = 2000     # rows: below this an action finishes before a bar is worth drawing


def interactive() -> bool:
    return sys.stdin.isatty()


def show_progress(total: int, as_json: bool) -> bool:
    return total >= PROGRESS_MIN and not as_json and sys.stderr.isatty()


def confirm(what: str, yes: bool) -> None:
    """Ask ``<what>?`` on a terminal; without one, refuse (exit 2) unless ``yes``: a
    script must say it means it."""
    if yes:
        return
    if not interactive():
        raise UsageFailure(f"{what}: pass --yes to confirm (stdin is not a terminal)")
    click.confirm(f"{what}?", abort=True)


# -- parameter types: a bad value is a usage error (exit 2) -----------------------------------
class Duration(_ParamType):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(f"{exc} (units: ms, s, m, h, d)", param, ctx)


class Size(_ParamType):
    name = "size"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class JsonObject(_ParamType):
    """A JSON object given inline, or ``@FILE`` (``@-`` reads stdin)."""

    name = "json"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        text = str(value)
        if text.startswith("@"):
            try:
                with click.open_file(text[1:], encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as exc:
                self.fail(f"cannot read {text[1:]}: {exc.strerror or exc}", param, ctx)
            except UnicodeDecodeError as exc:
                self.fail(f"{text[1:]} is not UTF-8 text: byte {exc.object[exc.start]:#04x} "
                          f"at offset {exc.start}", param, ctx)
        try:
            data = json.loads(text)
        except ValueError as exc:
            self.fail(f"not valid JSON: {exc}", param, ctx)
        if not isinstance(data, dict):
            self.fail(f"expected a JSON object such as '{{\"name\": \"x\"}}', got "
                      f"{type(data).__name__}", param, ctx)
        return data


class KeyValue(_ParamType):
    name = "key=value"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, val = str(value).partition("=")
        if not sep or not key:
            self.fail(f"expected KEY=VALUE, got {value!r}", param, ctx)
        return key, val


DURATION = Duration()
SIZE = Size()
JSON_OBJECT = JsonObject()
KEY_VALUE = KeyValue()
