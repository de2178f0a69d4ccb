"""Tests for ewfd.config: durations, sizes, file resolution and validation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ewfd.config import (
    DEFAULT_APP,
    Config,
    ConfigError,
    QueueConfig,
    load_config,
    parse_duration,
    parse_size,
)

REPO = Path(__file__).resolve().parents[2]
MINIMAL = '[ewfd]\napp = "myapp.workflows:engine"\n'


def write(tmp_path: Path, text: str, name: str = "ewfd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text), env={}, cwd=tmp_path)


def config_error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return info.value


# --- durations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("250ms", 0.25),
        ("2s", 2.0),
        ("1.5m", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("7d", 7 * 86400.0),
        ("0", 0.0),
        (" 30s ", 30.0),
        ("10 s", 10.0),
        (".5s", 0.5),
        (0, 0.0),
        (3, 3.0),
        (0.25, 0.25),
        ("366d", 366 * 86400.0),
    ],
)
def test_parse_duration_valid(value: str | float, seconds: float) -> None:
    result = parse_duration(value)
    assert isinstance(result, float)
    assert result == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "5 parsecs",
        "-1s",
        "-5",
        "5",
        "1.5",
        "s",
        "1e3s",
        "5S",
        "1h30m",
        -1,
        -0.5,
        math.nan,
        math.inf,
        -math.inf,
        True,
        None,
        [1],
    ],
)
def test_parse_duration_invalid(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)  # type: ignore[arg-type]


def test_parse_duration_message_is_clear() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("5 parsecs")
    assert str(info.value) == 'expected a duration like "250ms", "30s" or "5m", got "5 parsecs"'
    with pytest.raises(ValueError, match="missing unit"):
        parse_duration("5")
    with pytest.raises(ValueError, match=">= 0"):
        parse_duration("-1s")
    with pytest.raises(ValueError, match=r"^lease: "):
        parse_duration("x", where="lease")


@pytest.mark.parametrize("value", ["367d", "9000h", 367 * 86400, 1e300, "1" + "0" * 400 + "d"])
def test_parse_duration_rejects_huge(value: str | float) -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_duration(value)


# --- sizes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("0", 0),
        (0, 0),
        (4096, 4096),
        ("100", 100),
        ("10B", 10),
        ("1K", 1024),
        ("1KB", 1000),
        ("1KiB", 1024),
        ("2M", 2 * 1024**2),
        ("2MB", 2_000_000),
        ("512MiB", 512 * 1024**2),
        ("1G", 1024**3),
        ("3GB", 3_000_000_000),
        ("1GiB", 1024**3),
        ("1.5KiB", 1536),
        ("64 mib", 64 * 1024**2),
    ],
)
def test_parse_size_valid(value: str | int, size: int) -> None:
    result = parse_size(value)
    assert isinstance(result, int)
    assert result == size


@pytest.mark.parametrize(
    "value", ["", "MiB", "-1", "-1MiB", "12 parsecs", "1TiB", "1 2", -1, True, 1.5, None]
)
def test_parse_size_invalid(value: object) -> None:
    with pytest.raises(ValueError):
        parse_size(value)  # type: ignore[arg-type]


def test_parse_size_message_is_clear() -> None:
    with pytest.raises(ValueError) as info:
        parse_size("12 parsecs")
    assert str(info.value) == 'expected a size like "512MiB", "64KiB" or "0", got "12 parsecs"'


# --- resolution ------------------------------------------------------------------------


def test_explicit_path(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL, "custom.toml")
    other = write(tmp_path, '[ewfd]\napp = "other:engine"\n', "other.toml")
    (tmp_path / "ewfd.toml").write_text('[ewfd]\napp = "cwd:engine"\n')
    cfg = load_config(path, env={"EWFD_CONFIG": str(other)}, cwd=tmp_path)
    assert cfg.path == path
    assert cfg.app == "myapp.workflows:engine"


def test_explicit_relative_path_is_relative_to_cwd(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    write(sub, MINIMAL, "x.toml")
    cfg = load_config("conf/x.toml", env={}, cwd=tmp_path)
    assert cfg.path == sub / "x.toml"
    assert cfg.database == sub / "ewfd.db"


def test_env_var(tmp_path: Path) -> None:
    path = write(tmp_path, '[ewfd]\napp = "fromenv:engine"\n', "env.toml")
    (tmp_path / "ewfd.toml").write_text('[ewfd]\napp = "cwd:engine"\n')
    cfg = load_config(env={"EWFD_CONFIG": str(path)}, cwd=tmp_path)
    assert cfg.path == path
    assert cfg.app == "fromenv:engine"


def test_empty_env_var_counts_as_unset(tmp_path: Path) -> None:
    cfg = load_config(env={"EWFD_CONFIG": ""}, cwd=tmp_path)
    assert cfg.path is None


def test_cwd_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[ewfd]\napp = "cwd:engine"\n')
    cfg = load_config(env={}, cwd=tmp_path)
    assert cfg.path == path
    assert cfg.app == "cwd:engine"


def test_default_demo(tmp_path: Path) -> None:
    cfg = load_config(env={}, cwd=tmp_path)
    assert cfg.path is None
    assert cfg.app == DEFAULT_APP == "ewfd.examples.demo:engine"
    assert cfg.database == tmp_path / "ewfd.db"
    assert cfg.database.is_absolute()
    assert cfg.queues == {"default": QueueConfig("default")}
    assert cfg.log_file == "-"
    assert cfg.log_level == "info"
    assert cfg.shutdown_timeout == 30.0
    assert cfg.synchronous == "normal"
    assert cfg.max_state_size == 1024 * 1024
    assert cfg.timeout_grace == 5.0


def test_default_uses_process_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(env={})
    assert cfg.database == tmp_path / "ewfd.db"


@pytest.mark.parametrize("how", ["explicit", "env"])
def test_missing_named_file_is_exit_2(tmp_path: Path, how: str) -> None:
    missing = tmp_path / "nope.toml"
    write(tmp_path, MINIMAL)  # ./ewfd.toml exists but must not be used as a fallback
    with pytest.raises(ConfigError) as info:
        if how == "explicit":
            load_config(missing, env={}, cwd=tmp_path)
        else:
            load_config(env={"EWFD_CONFIG": str(missing)}, cwd=tmp_path)
    assert info.value.exit_code == 2
    assert str(missing) in str(info.value)
    assert "not found" in str(info.value)
    assert ("--config" if how == "explicit" else "$EWFD_CONFIG") in str(info.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory") as info:
        load_config(tmp_path, env={}, cwd=tmp_path)
    assert info.value.exit_code == 2


# --- validation ------------------------------------------------------------------------


def test_full_file(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        """
[ewfd]
database = "/srv/db/jobs.db"
app = "billing.flows:engine"
log_file = "/var/log/ewfd.log"
log_level = "DEBUG"
shutdown_timeout = "1m"
synchronous = "full"
max_state_size = "4MiB"
timeout_grace = 2

[queues.fast]
workers = 8
poll_interval = "10ms"
lease = "1m"
max_tasks_per_worker = 1000
max_memory = "512MiB"
max_crashes = 3

[queues."slow.io"]
""",
    )
    assert cfg.database == Path("/srv/db/jobs.db")
    assert cfg.app == "billing.flows:engine"
    assert cfg.log_file == "/var/log/ewfd.log"
    assert cfg.log_level == "debug"
    assert cfg.shutdown_timeout == 60.0
    assert cfg.synchronous == "full"
    assert cfg.max_state_size == 4 * 1024**2
    assert cfg.timeout_grace == 2.0
    assert cfg.queues == {
        "fast": QueueConfig(
            "fast",
            workers=8,
            poll_interval=0.01,
            lease=60.0,
            max_tasks_per_worker=1000,
            max_memory=512 * 1024**2,
            max_crashes=3,
        ),
        "slow.io": QueueConfig("slow.io"),
    }


def test_one_line_message_format(tmp_path: Path) -> None:
    path = tmp_path / "ewfd.toml"
    err = config_error(tmp_path, MINIMAL + '[queues.default]\nworkers = "two"\n')
    assert str(err) == (
        f'config: {path}: queues.default.workers: expected an integer >= 1, got "two"'
    )
    assert "\n" not in str(err)
    assert err.exit_code == 2
    assert err.key == "queues.default.workers"


def test_unknown_key_is_named_with_suggestion(tmp_path: Path) -> None:
    err = config_error(tmp_path, MINIMAL + "[queues.default]\nwokers = 3\n")
    assert "queues.default.wokers" in str(err)
    assert 'did you mean "workers"' in str(err)

    err = config_error(tmp_path, MINIMAL + 'log_levle = "info"\n')
    assert "ewfd.log_levle: unknown key" in str(err)
    assert 'did you mean "log_level"' in str(err)


def test_unknown_key_close_to_a_key_of_the_other_table(tmp_path: Path) -> None:
    err = config_error(tmp_path, MINIMAL + "wokers = 3\n")
    assert "ewfd.wokers: unknown key" in str(err)
    assert 'did you mean "workers"? it belongs in a [queues.NAME] table' in str(err)


def test_unknown_key_without_close_match(tmp_path: Path) -> None:
    err = config_error(tmp_path, MINIMAL + "zzzz = 1\n")
    assert str(err).endswith("ewfd.zzzz: unknown key")


def test_unknown_table(tmp_path: Path) -> None:
    err = config_error(tmp_path, MINIMAL + "[queue.default]\nworkers = 1\n")
    assert ": queue: unknown table" in str(err)
    assert 'did you mean "queues"' in str(err)


def test_key_in_wrong_table(tmp_path: Path) -> None:
    err = config_error(tmp_path, MINIMAL + "workers = 3\n")
    assert "ewfd.workers" in str(err)
    assert "[queues.NAME]" in str(err)
    err = config_error(tmp_path, MINIMAL + '[queues.default]\nlog_level = "info"\n')
    assert "queues.default.log_level" in str(err)
    assert "[ewfd]" in str(err)
    err = config_error(tmp_path, 'app = "x:y"\n')
    assert "app: unknown table" in str(err)
    assert "[ewfd]" in str(err)


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        ("workers = true", "workers", "got true"),
        ("workers = 2.0", "workers", "got 2.0"),
        ('workers = "2"', "workers", "without quotes"),
        ("workers = 0", "workers", "got 0"),
        ("workers = -1", "workers", "got -1"),
        ("workers = 65", "workers", "between 1 and 64"),
        ("max_crashes = 0", "max_crashes", "integer >= 1"),
        ("max_tasks_per_worker = -1", "max_tasks_per_worker", "integer >= 0"),
        ('lease = "500ms"', "lease", "duration >= 1s"),
        ('poll_interval = "0"', "poll_interval", "between 1ms and 1h"),
        ('poll_interval = "2h"', "poll_interval", "between 1ms and 1h"),
        ("poll_interval = true", "poll_interval", "got true"),
        ('lease = "400d"', "lease", "too large"),
        ('max_memory = "-1MiB"', "max_memory", "size >= 0"),
        ('max_memory = "lots"', "max_memory", 'got "lots"'),
    ],
)
def test_bad_queue_values(tmp_path: Path, body: str, key: str, fragment: str) -> None:
    err = config_error(tmp_path, MINIMAL + f"[queues.q1]\n{body}\n")
    assert f"queues.q1.{key}: " in str(err)
    assert fragment in str(err)


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        ('shutdown_timeout = "-5s"', "shutdown_timeout", ">= 0"),
        ('shutdown_timeout = "10y"', "shutdown_timeout", 'got "10y"'),
        ('timeout_grace = "1000d"', "timeout_grace", "too large"),
        ('log_level = "verbose"', "log_level", '"debug", "info", "warning", "error"'),
        ('log_level = "warnign"', "log_level", 'did you mean "warning"'),
        ('synchronous = "off"', "synchronous", '"normal", "full"'),
        ("max_state_size = 0", "max_state_size", "at least 1 bytes"),
        ("max_state_size = 1.5", "max_state_size", "got 1.5"),
        ("database = 3", "database", "expected a string"),
        ('database = ""', "database", "non-empty"),
        ('database = ":memory:"', "database", "share one database file"),
        ("log_file = false", "log_file", "expected a string"),
    ],
)
def test_bad_ewfd_values(tmp_path: Path, body: str, key: str, fragment: str) -> None:
    err = config_error(tmp_path, MINIMAL + body + "\n")
    assert f"ewfd.{key}: " in str(err)
    assert fragment in str(err)


def test_app_required_in_file(tmp_path: Path) -> None:
    err = config_error(tmp_path, '[ewfd]\nlog_level = "info"\n')
    assert "ewfd.app: missing" in str(err)
    err = config_error(tmp_path, "")
    assert "ewfd.app: missing" in str(err)


@pytest.mark.parametrize("app", ["myapp", "myapp:", ":engine", "my app:engine", "a:b:c"])
def test_app_must_be_module_attribute(tmp_path: Path, app: str) -> None:
    err = config_error(tmp_path, f'[ewfd]\napp = "{app}"\n')
    assert "ewfd.app: " in str(err)
    assert "module:attribute" in str(err)


def test_bad_toml(tmp_path: Path) -> None:
    path = write(tmp_path, '[ewfd\napp = "x:y"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={}, cwd=tmp_path)
    assert str(info.value).startswith(f"config: {path}: invalid TOML: ")
    assert "line 1" in str(info.value)
    assert "\n" not in str(info.value)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "ewfd.toml"
    path.write_bytes(b'[ewfd]\napp = "\xff:y"\n')
    with pytest.raises(ConfigError, match="invalid TOML: not UTF-8"):
        load_config(path, env={}, cwd=tmp_path)


def test_tables_must_be_tables(tmp_path: Path) -> None:
    err = config_error(tmp_path, "ewfd = 3\n")
    assert "ewfd: expected a table, got 3" in str(err)
    err = config_error(tmp_path, MINIMAL + "[queues]\ndefault = 4\n")
    assert "queues.default: expected a table" in str(err)


def test_relative_paths_resolve_against_config_dir(tmp_path: Path) -> None:
    confdir = tmp_path / "etc" / "ewfd"
    confdir.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = write(confdir, MINIMAL + 'database = "data/jobs.db"\nlog_file = "../ewfd.log"\n')
    cfg = load_config(path, env={}, cwd=elsewhere)
    assert cfg.database == confdir / "data" / "jobs.db"
    assert cfg.log_file == str(tmp_path / "etc" / "ewfd.log")


def test_default_database_is_next_to_config(tmp_path: Path) -> None:
    confdir = tmp_path / "conf"
    confdir.mkdir()
    cfg = load_config(write(confdir, MINIMAL), env={}, cwd=tmp_path)
    assert cfg.database == confdir / "ewfd.db"


def test_stdout_log_file_stays_dash(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL + 'log_file = "-"\n')
    assert cfg.log_file == "-"


def test_default_queue_when_no_queues_table(tmp_path: Path) -> None:
    assert load_text(tmp_path, MINIMAL).queues == {"default": QueueConfig("default")}
    assert load_text(tmp_path, MINIMAL + "[queues]\n").queues == {"default": QueueConfig("default")}


def test_named_queues_replace_default(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL + "[queues.emails]\nworkers = 1\n")
    assert list(cfg.queues) == ["emails"]
    assert cfg.queues["emails"].workers == 1
    assert cfg.queues["emails"].lease == 30.0


@pytest.mark.parametrize("name", ["a b", "x" * 65, "caf\u00e9", "a/b", ""])
def test_queue_names_validated(tmp_path: Path, name: str) -> None:
    err = config_error(tmp_path, MINIMAL + f'[queues."{name}"]\n')
    assert "invalid queue name" in str(err)


@pytest.mark.parametrize("name", ["a", "x" * 64, "my-queue_1.v2"])
def test_queue_names_accepted(tmp_path: Path, name: str) -> None:
    assert name in load_text(tmp_path, MINIMAL + f'[queues."{name}"]\n').queues


def test_dotted_queue_name_is_quoted_in_errors(tmp_path: Path) -> None:
    err = config_error(tmp_path, MINIMAL + '[queues."a.b"]\nworkers = 0\n')
    assert 'queues."a.b".workers: ' in str(err)


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL)
    with pytest.raises(AttributeError):
        cfg.app = "x:y"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cfg.queues["default"].workers = 9  # type: ignore[misc]


def test_sample_config_loads() -> None:
    sample = REPO / "etc" / "ewfd.toml"
    cfg = load_config(sample, env={}, cwd=Path("/"))
    assert cfg.path == sample
    assert cfg.app == "ewfd.examples.demo:engine"
    assert cfg.database == sample.parent / "ewfd.db"
    # The sample documents the defaults: everything but the path must match them.
    defaults = Config()
    for name in (
        "app",
        "log_file",
        "log_level",
        "shutdown_timeout",
        "synchronous",
        "max_state_size",
        "timeout_grace",
        "queues",
    ):
        assert getattr(cfg, name) == getattr(defaults, name), name
