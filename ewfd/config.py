"""Daemon configuration: the TOML file read by ``ewfd run`` (CONTRACT section 4).

The file is validated completely before anything starts, so that a typo stops the
daemon at once with one line that names the file, the key and the problem,
instead of surfacing later as a worker crash loop.

Resolution order (:func:`find_config`, shared by ``ewfd run`` and ``ewfd ctl``): an
explicit path (``--config``), else ``$EWFD_CONFIG``, else ``./ewfd.toml``, else
``/etc/ewfd/ewfd.toml`` (where the systemd unit's config lives, so ``ewfd ctl`` on the
server needs no ``--config``), else the built-in demo setup. A file that was *named*
but does not exist is an error, never a silent fallback to the demo.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

from .model import MAX_WORKERS as MAX_WORKERS

__all__ = [
    "CONFIG_ENV_VAR",
    "CONFIG_SEARCH",
    "DEFAULT_APP",
    "DEFAULT_CONFIG_NAME",
    "Config",
    "ConfigError",
    "QueueConfig",
    "RetentionConfig",
    "default_config",
    "find_config",
    "load_config",
    "parse_duration",
    "parse_size",
]

CONFIG_ENV_VAR: Final = "EWFD_CONFIG"
DEFAULT_CONFIG_NAME: Final = "ewfd.toml"
SYSTEM_CONFIG = Path("/etc/ewfd/ewfd.toml")   # not Final: tests point it elsewhere
#: The order :func:`find_config` looks in, for help texts.
CONFIG_SEARCH: Final = (f"${CONFIG_ENV_VAR}, else ./{DEFAULT_CONFIG_NAME}, else {SYSTEM_CONFIG}, "
                        "else the bundled demo app on ./ewfd.db")
DEFAULT_APP: Final = "ewfd.examples.demo:engine"
DEFAULT_DATABASE: Final = "ewfd.db"

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
SYNCHRONOUS_MODES: Final = ("normal", "full")

#: Longest accepted duration. Anything larger is almost certainly a unit mistake
#: ("30d" meant as "30s"), and it keeps timestamps far from float/SQLite limits.
MAX_DURATION: Final = 366 * 86400.0

QUEUE_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_DURATION_UNITS: Final = {
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}
_DURATION_RE: Final = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")
_DURATION_HINT: Final = 'expected a duration like "250ms", "30s" or "5m"'

# Like systemd: bare K/M/G are binary (1024); KB/MB/GB decimal; KiB/MiB/GiB binary.
_SIZE_UNITS: Final = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
_SIZE_RE: Final = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")
_SIZE_HINT: Final = 'expected a size like "512MiB", "64KiB" or "0"'

_APP_RE: Final = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_BARE_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]+")


def _show(value: object) -> str:
    """Render a value as it would look in TOML, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def parse_duration(value: str | int | float, *, where: str = "") -> float:
    """Parse a duration into seconds.

    Numbers are seconds; strings need a unit (``ms``, ``s``, ``m``, ``h``, ``d``)
    because a bare "5" is ambiguous, except "0" which means the same in every unit.
    ``where`` (e.g. a key name) is prefixed to error messages.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{_prefix(where)}{_DURATION_HINT}, got {_show(value)}")
    if isinstance(value, str):
        m = _DURATION_RE.fullmatch(value)
        negative = (
            value.strip().startswith("-") and _DURATION_RE.fullmatch(value.strip()[1:]) is not None
        )
        if negative:
            raise ValueError(f"{_prefix(where)}expected a duration >= 0, got {_show(value)}")
        if m is None:
            raise ValueError(f"{_prefix(where)}{_DURATION_HINT}, got {_show(value)}")
        number, unit = m.group(1), m.group(2)
        if unit == "":
            if Decimal(number) != 0:
                raise ValueError(
                    f"{_prefix(where)}{_DURATION_HINT}, got {_show(value)} "
                    f'(missing unit: did you mean "{number}s"?)'
                )
            seconds = 0.0
        elif unit in _DURATION_UNITS:
            seconds = float(Decimal(number) * _DURATION_UNITS[unit])
        else:
            raise ValueError(f"{_prefix(where)}{_DURATION_HINT}, got {_show(value)}")
    else:
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"{_prefix(where)}expected a finite duration, got {_show(value)}")
        if value < 0:
            raise ValueError(f"{_prefix(where)}expected a duration >= 0, got {_show(value)}")
        seconds = float(value)
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ValueError(f"{_prefix(where)}duration {_show(value)} is too large (at most 366d)")
    return seconds


def parse_size(value: str | int, *, where: str = "") -> int:
    """Parse a byte size.

    Integers are bytes. Strings take ``B``; ``K``/``M``/``G`` and ``KiB``/``MiB``/``GiB``
    are powers of 1024 (as in systemd), ``KB``/``MB``/``GB`` powers of 1000. Units are
    case-insensitive; a fractional result is rounded down to whole bytes.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{_prefix(where)}{_SIZE_HINT}, got {_show(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{_prefix(where)}expected a size >= 0, got {_show(value)}")
        return value
    stripped = value.strip()
    if stripped.startswith("-") and _SIZE_RE.fullmatch(stripped[1:]) is not None:
        raise ValueError(f"{_prefix(where)}expected a size >= 0, got {_show(value)}")
    m = _SIZE_RE.fullmatch(value)
    if m is None or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{_prefix(where)}{_SIZE_HINT}, got {_show(value)}")
    try:
        number = Decimal(m.group(1))
    except InvalidOperation:  # pragma: no cover - the regex only admits digits
        raise ValueError(f"{_prefix(where)}{_SIZE_HINT}, got {_show(value)}") from None
    return int(number * _SIZE_UNITS[m.group(2).lower()])


class ConfigError(Exception):
    """A configuration problem, reported as one line: ``config: <path>: <key>: <problem>``.

    ``exit_code`` is what ``ewfd run`` should exit with (2: a usage problem, the
    daemon never started).
    """

    def __init__(
        self,
        problem: str,
        *,
        path: str | os.PathLike[str] | None = None,
        key: str | None = None,
        exit_code: int = 2,
    ) -> None:
        self.problem = " ".join(problem.split())  # one line, whatever the source said
        self.path = None if path is None else os.fspath(path)
        self.key = key
        self.exit_code = exit_code
        parts = ["config"]
        if self.path is not None:
            parts.append(self.path)
        if key:
            parts.append(key)
        parts.append(self.problem)
        super().__init__(": ".join(parts))


@dataclass(frozen=True)
class QueueConfig:
    """Settings of one queue's worker pool (a ``[queues.NAME]`` table)."""

    name: str
    workers: int = 2
    poll_interval: float = 0.1
    lease: float = 30.0
    max_tasks_per_worker: int = 0
    max_memory: int = 0
    max_crashes: int = 5


FINISHED: Final = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class RetentionConfig:
    """How long finished workflows are kept (the ``[retention]`` table), in seconds since
    their last update; None keeps them forever. ``interval`` is how often the daemon
    looks for what to delete."""

    completed: float | None = None
    failed: float | None = None
    cancelled: float | None = None
    interval: float = 60.0

    @property
    def enabled(self) -> bool:
        return any(self.keep(status) is not None for status in FINISHED)

    def keep(self, status: str) -> float | None:
        """Seconds a ``status`` workflow is kept (None: forever)."""
        value: float | None = getattr(self, status)
        return value


@dataclass(frozen=True)
class Config:
    """The validated daemon configuration; paths are absolute after :func:`load_config`.

    ``path`` is the file it came from, or None for the built-in demo setup.
    ``timeout_grace`` is how long past a step's timeout a worker that ignores the
    interruption may keep running before the supervisor kills it.
    """

    path: Path | None = None
    database: Path = Path(DEFAULT_DATABASE)
    app: str = DEFAULT_APP
    log_file: str = "-"
    log_level: str = "info"
    shutdown_timeout: float = 30.0
    synchronous: str = "normal"
    max_state_size: int = 1024 * 1024
    timeout_grace: float = 5.0
    queues: dict[str, QueueConfig] = field(
        default_factory=lambda: {"default": QueueConfig("default")}
    )
    retention: RetentionConfig = field(default_factory=RetentionConfig)


_EWFD_KEYS: Final = (
    "database",
    "app",
    "log_file",
    "log_level",
    "shutdown_timeout",
    "synchronous",
    "max_state_size",
    "timeout_grace",
)
_QUEUE_KEYS: Final = (
    "workers",
    "poll_interval",
    "lease",
    "max_tasks_per_worker",
    "max_memory",
    "max_crashes",
)
_RETENTION_KEYS: Final = (*FINISHED, "interval")
_TOP_KEYS: Final = ("ewfd", "queues", "retention")


def _dotted(*parts: str) -> str:
    """Join key parts as TOML would spell them (quoting names like ``my.queue``)."""
    return ".".join(p if _BARE_KEY_RE.fullmatch(p) else json.dumps(p) for p in parts)


def _suggest(key: str, valid: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


class _Loader:
    """Validates one parsed TOML document; every error names the offending key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent

    def error(self, key: str | None, problem: str) -> ConfigError:
        return ConfigError(problem, path=self.path, key=key)

    def unknown(self, key: str, dotted: str, valid: tuple[str, ...], where: str) -> ConfigError:
        if where == "ewfd" and key in _QUEUE_KEYS:
            hint = f' ("{key}" belongs in a [queues.NAME] table)'
        elif where == "queue" and key in _EWFD_KEYS:
            hint = f' ("{key}" belongs in the [ewfd] table)'
        elif where == "top" and key in _EWFD_KEYS:
            hint = f' (put "{key}" under an [ewfd] table)'
        elif where == "ewfd" and key == "retention":
            hint = " (a table of its own: [retention])"
        elif where == "top" and key in _RETENTION_KEYS:
            hint = f' (put "{key}" under a [retention] table)'
        elif where == "retention" and key in ("pending", "running"):
            hint = (" (only finished workflows are pruned: "
                    + ", ".join(json.dumps(s) for s in FINISHED) + ")")
        else:
            hint = _suggest(key, valid)
            other = {"ewfd": ("[queues.NAME]", _QUEUE_KEYS), "queue": ("[ewfd]", _EWFD_KEYS)}
            if not hint and where in other:
                table, keys = other[where]
                close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
                if close:
                    hint = f' (did you mean "{close[0]}"? it belongs in a {table} table)'
        kind = "table" if where == "top" else "key"
        return self.error(dotted, f"unknown {kind}{hint}")

    def table(self, value: object, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table, got {_show(value)}")
        return value

    def integer(self, value: object, key: str, low: int, high: int | None = None) -> int:
        expected = f"expected an integer >= {low}"
        if isinstance(value, bool) or not isinstance(value, int):
            hint = ""
            if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                hint = " (a string: write the number without quotes)"
            raise self.error(key, f"{expected}, got {_show(value)}{hint}")
        if value < low:
            raise self.error(key, f"{expected}, got {_show(value)}")
        if high is not None and value > high:
            raise self.error(
                key, f"expected an integer between {low} and {high}, got {_show(value)}"
            )
        return value

    def duration(
        self,
        value: object,
        key: str,
        low: float = 0.0,
        high: float | None = None,
        low_text: str = "0",
        high_text: str = "",
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self.error(key, f"{_DURATION_HINT}, got {_show(value)}")
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None
        if seconds < low or (high is not None and seconds > high):
            bounds = f"between {low_text} and {high_text}" if high is not None else f">= {low_text}"
            raise self.error(key, f"expected a duration {bounds}, got {_show(value)}")
        return seconds

    def size(self, value: object, key: str, low: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise self.error(key, f"{_SIZE_HINT}, got {_show(value)}")
        try:
            size = parse_size(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None
        if size < low:
            raise self.error(key, f"expected a size of at least {low} bytes, got {_show(value)}")
        return size

    def string(self, value: object, key: str) -> str:
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_show(value)}")
        if not value.strip():
            raise self.error(key, "expected a non-empty string")
        return value

    def choice(self, value: object, key: str, choices: tuple[str, ...]) -> str:
        listed = ", ".join(json.dumps(c) for c in choices)
        if not isinstance(value, str) or value.strip().lower() not in choices:
            hint = _suggest(value.strip().lower(), choices) if isinstance(value, str) else ""
            raise self.error(key, f"expected one of {listed}, got {_show(value)}{hint}")
        return value.strip().lower()

    def file_path(self, value: object, key: str) -> Path:
        text = self.string(value, key)
        if text == ":memory:":
            raise self.error(
                key,
                'expected a file path, got ":memory:" '
                "(worker processes must share one database file)",
            )
        return _absolute(Path(text).expanduser(), self.base)

    def load(self, doc: dict[str, Any]) -> Config:
        for key, value in doc.items():
            if key not in _TOP_KEYS:
                raise self.unknown(key, _dotted(key), _TOP_KEYS, "top")
            self.table(value, _dotted(key))

        ewfd = doc.get("ewfd", {})
        for key in ewfd:
            if key not in _EWFD_KEYS:
                raise self.unknown(key, _dotted("ewfd", key), _EWFD_KEYS, "ewfd")

        def k(name: str) -> str:
            return _dotted("ewfd", name)

        defaults = Config()
        if "app" not in ewfd:
            raise self.error(
                k("app"),
                "missing; set it to the module:attribute of your "
                'Engine, e.g. "myapp.workflows:engine"',
            )
        app = self.string(ewfd["app"], k("app")).strip()
        if not _APP_RE.fullmatch(app):
            raise self.error(
                k("app"),
                'expected "module:attribute" such as '
                f'"myapp.workflows:engine", got {_show(ewfd["app"])}',
            )

        database = self.file_path(ewfd.get("database", DEFAULT_DATABASE), k("database"))
        log_file = self.string(ewfd.get("log_file", "-"), k("log_file"))
        if log_file != "-":
            log_file = str(self.file_path(log_file, k("log_file")))

        config = Config(
            path=self.path,
            database=database,
            app=app,
            log_file=log_file,
            log_level=self.choice(
                ewfd.get("log_level", defaults.log_level), k("log_level"), LOG_LEVELS
            ),
            shutdown_timeout=self.duration(
                ewfd.get("shutdown_timeout", defaults.shutdown_timeout), k("shutdown_timeout")
            ),
            synchronous=self.choice(
                ewfd.get("synchronous", defaults.synchronous), k("synchronous"), SYNCHRONOUS_MODES
            ),
            max_state_size=self.size(
                ewfd.get("max_state_size", defaults.max_state_size), k("max_state_size"), low=1
            ),
            timeout_grace=self.duration(
                ewfd.get("timeout_grace", defaults.timeout_grace), k("timeout_grace")
            ),
            queues=self.queues(doc.get("queues", {})),
            retention=self.retention(doc.get("retention", {})),
        )
        return config

    def retention(self, table: dict[str, Any]) -> RetentionConfig:
        for key in table:
            if key not in _RETENTION_KEYS:
                raise self.unknown(key, _dotted("retention", key), _RETENTION_KEYS, "retention")
        kept: dict[str, float | None] = {}
        for status in FINISHED:
            if status not in table:
                kept[status] = None
                continue
            key = _dotted("retention", status)
            try:
                kept[status] = self.duration(table[status], key, low=1.0, low_text="1s")
            except ConfigError as exc:
                if "expected a duration >=" not in exc.problem:
                    raise
                raise self.error(key, f"{exc.problem} (remove the key to keep {status} "
                                      "workflows forever)") from None
        interval = self.duration(table.get("interval", RetentionConfig.interval),
                                 _dotted("retention", "interval"), low=1.0, high=86400.0,
                                 low_text="1s", high_text="1d")
        return RetentionConfig(**kept, interval=interval)

    def queues(self, tables: dict[str, Any]) -> dict[str, QueueConfig]:
        if not tables:
            return {"default": QueueConfig("default")}
        result: dict[str, QueueConfig] = {}
        for name, raw in tables.items():
            qkey = _dotted("queues", name)
            if not QUEUE_NAME_RE.fullmatch(name):
                raise self.error(
                    qkey,
                    "invalid queue name: expected 1 to 64 characters "
                    f"from A-Z a-z 0-9 _ . -, got {_show(name)}",
                )
            table = self.table(raw, qkey)
            for key in table:
                if key not in _QUEUE_KEYS:
                    raise self.unknown(key, _dotted("queues", name, key), _QUEUE_KEYS, "queue")

            def k(key: str, name: str = name) -> str:
                return _dotted("queues", name, key)

            d = QueueConfig(name)
            result[name] = QueueConfig(
                name=name,
                workers=self.integer(table.get("workers", d.workers), k("workers"), 1, MAX_WORKERS),
                poll_interval=self.duration(
                    table.get("poll_interval", d.poll_interval),
                    k("poll_interval"),
                    low=0.001,
                    high=3600.0,
                    low_text="1ms",
                    high_text="1h",
                ),
                lease=self.duration(
                    table.get("lease", d.lease), k("lease"), low=1.0, low_text="1s"
                ),
                max_tasks_per_worker=self.integer(
                    table.get("max_tasks_per_worker", d.max_tasks_per_worker),
                    k("max_tasks_per_worker"),
                    0,
                ),
                max_memory=self.size(table.get("max_memory", d.max_memory), k("max_memory")),
                max_crashes=self.integer(
                    table.get("max_crashes", d.max_crashes), k("max_crashes"), 1
                ),
            )
        return result


def _absolute(path: Path, base: Path) -> Path:
    """Anchor a relative path at ``base`` and normalise it (without resolving symlinks)."""
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def default_config(cwd: Path | None = None) -> Config:
    """The no-file setup: the bundled demo app on ``<cwd>/ewfd.db`` with one default queue."""
    base = Path.cwd() if cwd is None else cwd
    return Config(path=None, database=_absolute(Path(DEFAULT_DATABASE), base))


def _read(path: Path) -> Config:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", path=path) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a TOML file", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=path) from None
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"invalid TOML: not UTF-8 ({exc.reason} at byte {exc.start})", path=path
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=path) from None
    return _Loader(path).load(doc)


def find_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    cwd: Path | None = None,
    system: Path | None = None,
) -> tuple[Path | None, str | None]:
    """(the config file to read, what named it), or (None, None) for the demo default.

    Order: ``path`` (from ``--config``), else ``$EWFD_CONFIG`` (empty counts as unset),
    else ``<cwd>/ewfd.toml`` if present, else ``system`` (default :data:`SYSTEM_CONFIG`,
    ``/etc/ewfd/ewfd.toml``) if present. What named the file (``--config``, the variable)
    is returned so that a missing one is reported as the caller's mistake; the two places
    searched count only when they exist.
    """
    base = Path.cwd() if cwd is None else cwd
    if path is not None:
        return _absolute(Path(os.fspath(path)).expanduser(), base), "--config"
    if env.get(CONFIG_ENV_VAR):
        return _absolute(Path(env[CONFIG_ENV_VAR]).expanduser(), base), f"${CONFIG_ENV_VAR}"
    for candidate in (base / DEFAULT_CONFIG_NAME, SYSTEM_CONFIG if system is None else system):
        if candidate.exists():
            return _absolute(candidate, base), None
    return None, None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    cwd: Path | None = None,
    system: Path | None = None,
) -> Config:
    """Find (:func:`find_config`), read and validate the configuration; with no file,
    :func:`default_config`. A file named by ``path`` or the variable must exist: a typo
    must not quietly run the demo app instead. Raises :class:`ConfigError` for every
    problem.
    """
    base = Path.cwd() if cwd is None else cwd
    found, named = find_config(path, env=env, cwd=base, system=system)
    if found is None:
        return default_config(base)
    if named is not None and not found.exists():
        raise ConfigError(f"file not found (named by {named})", path=found, exit_code=2)
    return _read(found)
