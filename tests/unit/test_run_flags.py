"""``ewfd run`` flags (``--app``, ``--db``, ``--queue``, ``--log-level``, ``--log-file``) on
top of a config file or without one, and ``app_path``: how the config finds the app."""

from __future__ import annotations

from pathlib import Path

import pytest

from ewfd.config import ConfigError, Overrides, QueueConfig, load_config


def write(directory: Path, text: str, name: str = "ewfd.toml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def flag_error(tmp_path: Path, overrides: Overrides, path: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env={}, cwd=tmp_path, overrides=overrides)
    assert info.value.exit_code == 2
    return str(info.value)


def test_flags_alone_make_a_config(tmp_path: Path) -> None:
    cfg = load_config(env={}, cwd=tmp_path, overrides=Overrides(
        app="shop:engine", database="data/shop.db", queues=("orders=4",)))
    assert cfg.path is None
    assert cfg.app == "shop:engine"
    assert cfg.database == tmp_path / "data" / "shop.db"
    assert cfg.queues == {"orders": QueueConfig("orders", workers=4)}
    assert cfg.app_path == (tmp_path,)       # like celery -A: the current directory
    assert "--queue orders=4" in cfg.queues["orders"].source


def test_a_queue_flag_alone_still_runs_the_demo_app(tmp_path: Path) -> None:
    cfg = load_config(env={}, cwd=tmp_path, overrides=Overrides(queues=("a=1", "b")))
    assert cfg.app == "ewfd.examples.demo:engine"
    assert cfg.queues == {"a": QueueConfig("a", workers=1), "b": QueueConfig("b")}
    assert cfg.database == tmp_path / "ewfd.db"


def test_flags_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "etc", '[ewfd]\napp = "x:engine"\ndatabase = "a.db"\n'
                 'log_level = "info"\n\n[queues.orders]\nworkers = 2\nlease = "10s"\n\n'
                 "[queues.default]\n")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    cfg = load_config(path, env={}, cwd=cwd, overrides=Overrides(
        app="y:engine", database="b.db", log_level="debug", log_file="run.log",
        queues=("orders=4", "reports")))
    assert cfg.app == "y:engine"
    assert cfg.database == cwd / "b.db"             # a flag's path: from the current directory
    assert cfg.log_level == "debug"
    assert cfg.log_file == str(cwd / "run.log")
    assert cfg.queues["orders"] == QueueConfig("orders", workers=4, lease=10.0)
    assert cfg.queues["default"] == QueueConfig("default")
    assert cfg.queues["reports"] == QueueConfig("reports")
    assert cfg.queues["default"].source == str(path)
    assert str(path) in cfg.queues["orders"].source
    assert "--queue orders=4" in cfg.queues["orders"].source
    assert cfg.app_path == (cwd, path.parent)       # --app: the current directory first


def test_without_flags_the_file_is_untouched(tmp_path: Path) -> None:
    path = write(tmp_path, '[ewfd]\napp = "x:engine"\n')
    assert load_config(path, env={}, cwd=tmp_path, overrides=Overrides()) == \
        load_config(path, env={}, cwd=tmp_path)


def test_queue_flags_replace_the_implicit_default_queue(tmp_path: Path) -> None:
    path = write(tmp_path, '[ewfd]\napp = "x:engine"\n')
    cfg = load_config(path, env={}, cwd=tmp_path, overrides=Overrides(queues=("orders=3",)))
    assert list(cfg.queues) == ["orders"]


@pytest.mark.parametrize(("flags", "expected"), [
    (Overrides(queues=("orders=two",)), '--queue orders=two: expected an integer >= 1, got "two"'),
    (Overrides(queues=("orders=0",)), "--queue orders=0: expected an integer >= 1, got 0"),
    (Overrides(queues=("orders=65",)), "--queue orders=65: expected an integer between 1 and 64"),
    (Overrides(queues=("bad name!=1",)), "--queue bad name!=1: invalid queue name"),
    (Overrides(queues=("=3",)), "--queue =3: invalid queue name"),
    (Overrides(app="shop"), '--app: expected "module:attribute"'),
    (Overrides(log_level="loud"), '--log-level: expected one of "debug", "info", "warning", '
                                  '"error", got "loud"'),
    (Overrides(database=":memory:"), '--db: expected a file path, got ":memory:"'),
])
def test_bad_flags_say_which_flag_like_the_config_says_which_key(
        tmp_path: Path, flags: Overrides, expected: str) -> None:
    assert flag_error(tmp_path, flags).startswith(expected)


def test_a_flag_error_has_the_config_file_error_text(tmp_path: Path) -> None:
    path = write(tmp_path, '[ewfd]\napp = "x:engine"\n\n[queues.orders]\nworkers = "two"\n')
    from_file = flag_error(tmp_path, Overrides(), path)
    from_flag = flag_error(tmp_path, Overrides(queues=("orders=two",)))
    assert from_file.split("queues.orders.workers: ")[1] == from_flag.split("orders=two: ")[1]


def test_a_bad_file_is_reported_even_with_flags(tmp_path: Path) -> None:
    path = write(tmp_path, '[ewfd]\napp = "x:engine"\nwokers = 2\n')
    assert "ewfd.wokers: unknown key" in flag_error(tmp_path, Overrides(app="y:engine"), path)


# -- app_path ---------------------------------------------------------------------------------
def test_app_path_defaults_to_the_config_directory(tmp_path: Path) -> None:
    path = write(tmp_path / "etc", '[ewfd]\napp = "shop:engine"\n')
    assert load_config(path, env={}, cwd=tmp_path).app_path == (tmp_path / "etc",)


def test_app_path_is_relative_to_the_config(tmp_path: Path) -> None:
    path = write(tmp_path / "etc", '[ewfd]\napp = "shop:engine"\napp_path = "../src"\n')
    assert load_config(path, env={}, cwd=tmp_path).app_path == (tmp_path / "src",)
    path.write_text('[ewfd]\napp = "shop:engine"\napp_path = ["../src", "/opt/lib"]\n')
    assert load_config(path, env={}, cwd=tmp_path).app_path == (tmp_path / "src",
                                                                 Path("/opt/lib"))


@pytest.mark.parametrize("value", ["3", "[]", '[""]', '["a", 1]'])
def test_bad_app_path(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f'[ewfd]\napp = "shop:engine"\napp_path = {value}\n')
    message = flag_error(tmp_path, Overrides(), path)
    assert "ewfd.app_path: expected a directory or a list of directories" in message


def test_the_demo_default_needs_no_app_path(tmp_path: Path) -> None:
    assert load_config(env={}, cwd=tmp_path).app_path == ()
