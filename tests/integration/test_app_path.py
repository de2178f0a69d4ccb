"""Finding the app: the config's ``app_path`` (by default the config file's directory) comes
first on ``sys.path``, so a plain ``shop.py`` next to the config is imported wherever ewfd
runs from, and a failed import says what was searched and what was found instead."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ewfd.app import AppError, load_app
from ewfd.engine import Engine

APP = "from ewfd import Engine\nengine = Engine()\nengine.found_in = __file__\n"


@pytest.fixture(autouse=True)
def clean_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """load_app changes sys.path and sys.modules: give each test its own copies."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    yield


def make_app(directory: Path, module: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{module}.py"
    path.write_text(APP)
    return path


@pytest.mark.parametrize("decoy", ["namespace", "package"])
def test_the_app_next_to_the_config_wins_over_a_decoy_in_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decoy: str) -> None:
    real = make_app(tmp_path / "etc", "shop_a1")
    cwd = tmp_path / "work"
    (cwd / "shop_a1").mkdir(parents=True)
    if decoy == "package":
        (cwd / "shop_a1" / "__init__.py").write_text("")
    monkeypatch.chdir(cwd)
    sys.path.insert(0, "")      # what `python -m ewfd` has: the current directory first
    engine = load_app("shop_a1:engine", [tmp_path / "etc"])
    assert isinstance(engine, Engine)
    assert engine.found_in == str(real)  # type: ignore[attr-defined]


def test_the_current_directory_is_not_searched_unless_asked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_app(tmp_path / "work", "shop_a2")
    monkeypatch.chdir(tmp_path / "work")
    sys.path[:] = [p for p in sys.path if p not in ("", str(tmp_path / "work"))]
    with pytest.raises(AppError) as info:
        load_app("shop_a2:engine", [tmp_path / "etc"])
    message = str(info.value)
    assert "No module named 'shop_a2'" in message
    assert f"searched {tmp_path / 'etc'} first" in message
    assert "app_path" in message


def test_a_directory_taken_for_the_app_is_named(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "work"
    (cwd / "shop_a3").mkdir(parents=True)
    monkeypatch.chdir(cwd)
    sys.path.insert(0, "")
    with pytest.raises(AppError) as info:
        load_app("shop_a3:engine", [tmp_path / "etc"])
    message = str(info.value)
    assert "has no attribute 'engine'" in message
    assert f"the directory {cwd / 'shop_a3'}" in message
    assert "no __init__.py" in message


def test_a_module_has_no_such_attribute_names_its_file(tmp_path: Path) -> None:
    path = make_app(tmp_path, "shop_a4")
    with pytest.raises(AppError) as info:
        load_app("shop_a4:engin", [tmp_path])
    assert f"module 'shop_a4' ({path}) has no attribute 'engin'" in str(info.value)


def test_packages_and_dotted_attributes_still_work(tmp_path: Path) -> None:
    pkg = tmp_path / "src" / "shop_a5"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "flows.py").write_text("from ewfd import Engine\nclass Holder:\n"
                                  "    engine = Engine()\n")
    assert isinstance(load_app("shop_a5.flows:Holder.engine", [tmp_path / "src"]), Engine)
