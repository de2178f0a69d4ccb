"""``ewfd run`` as operators start it: flags instead of (or on top of) a config file, the
app found next to its config from any directory, ``--check``, and what SIGHUP applies."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Daemon, event, read_json_lines, wait_until

pytestmark = pytest.mark.e2e

SHOP = """\
from ewfd import Engine, Step, WorkflowTemplate

engine = Engine()

@engine.activity("pack")
def pack(ctx, state):
    state["packed_by"] = __file__

engine.register_template("order", WorkflowTemplate(steps=[Step("pack")]))
"""


def ewfd(daemon: Daemon, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ewfd", *args], cwd=cwd or daemon.dir,
                          env=daemon.env(), capture_output=True, text=True, timeout=60,
                          start_new_session=True)


# -- item 9: ewfd run without a config file -------------------------------------------------
@pytest.mark.timeout(60)
def test_run_with_flags_and_no_config_file(daemon: Daemon) -> None:
    daemon.config_path = None
    daemon.queues = {"orders": {"workers": 2}, "mail": {"workers": 1}}
    daemon.start(args=["--app", "e2eapp:engine", "--queue", "orders=2", "--queue", "mail=1",
                       "--db", "./ewfd.db", "--log-file", "ewfd.log"])
    started = daemon.events("supervisor.started")[0]
    assert started["queues"] == ["mail", "orders"] and started["workers"] == 3
    assert started["app"] == "e2eapp:engine" and started["database"] == str(daemon.db)
    uuid = daemon.insert_job("three", {"n": 1}, queue="orders")
    daemon.wait_for_status(uuid, "completed")
    assert daemon.stop() == 0


@pytest.mark.timeout(60)
def test_flags_win_over_the_config_file(daemon: Daemon) -> None:
    daemon.configure(queues={"default": {"workers": 2}, "orders": {"workers": 2}})
    daemon.queues = {"default": {"workers": 1}, "orders": {"workers": 2}}
    assert daemon.config_path is not None
    daemon.start(args=["--config", str(daemon.config_path), "--queue", "default=1"])
    assert len(daemon.wait_for_workers(3)) == 3
    assert daemon.events("supervisor.started")[0]["workers"] == 3
    assert daemon.stop() == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("args", "expected"), [
    (["--queue", "orders=two"], 'ewfd: --queue orders=two: expected an integer >= 1, got "two"'),
    (["--queue", "bad name=1"], "ewfd: --queue bad name=1: invalid queue name"),
    (["--app", "shop"], 'ewfd: --app: expected "module:attribute"'),
    (["--app", "no_such_module_e2e:engine"], "ewfd: --app: cannot import 'no_such_module_e2e'"),
    (["--log-level", "loud"], 'ewfd: --log-level: expected one of "debug", "info"'),
])
def test_bad_flags_exit_2_with_one_line_naming_the_flag(daemon: Daemon, args: list[str],
                                                        expected: str) -> None:
    result = ewfd(daemon, "run", "--db", "x.db", *args)
    assert result.returncode == 2, result
    assert result.stderr.startswith(expected), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (daemon.dir / "x.db").exists()


# -- item 5: the app next to its config, from any directory -----------------------------------
@pytest.mark.timeout(60)
def test_the_app_is_found_next_to_its_config_from_another_directory(daemon: Daemon) -> None:
    elsewhere = daemon.dir / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "shop_e2e.py").write_text(SHOP)
    decoy = daemon.dir / "cwd"
    (decoy / "shop_e2e").mkdir(parents=True)       # a directory of the same name
    (decoy / "shop_e2e" / "notes.txt").write_text("not the app")
    daemon.config_path = elsewhere / "ewfd.toml"
    daemon.configure({"app": "shop_e2e:engine"}, queues={"default": {"workers": 1}})
    daemon.start(args=["--config", str(daemon.config_path)], cwd=decoy)
    uuid = daemon.insert_job("order")
    row = daemon.wait_for_status(uuid, "completed")
    assert json.loads(row["state"])["packed_by"] == str(elsewhere / "shop_e2e.py")
    assert daemon.stop() == 0


@pytest.mark.timeout(60)
def test_a_failed_app_import_says_what_was_searched(daemon: Daemon) -> None:
    elsewhere = daemon.dir / "elsewhere"
    elsewhere.mkdir()
    (daemon.dir / "shop_e2e").mkdir()              # the decoy, in the current directory
    daemon.config_path = elsewhere / "ewfd.toml"
    daemon.configure({"app": "shop_e2e:engine"})
    result = ewfd(daemon, "run", "--config", str(daemon.config_path))
    assert result.returncode == 2, result
    message = result.stderr.strip()
    assert f"config: {daemon.config_path}: ewfd.app:" in message
    assert f"the directory {daemon.dir / 'shop_e2e'}, a namespace package" in message
    assert f"searched {elsewhere} first" in message


# -- item 2: ewfd run --check -------------------------------------------------------------
@pytest.mark.timeout(60)
def test_check_validates_without_starting_anything(daemon: Daemon) -> None:
    path = daemon.configure(queues={"default": {"workers": 2}, "orders": {"workers": 3}})
    result = ewfd(daemon, "run", "--check", "--config", str(path))
    assert result.returncode == 0, result
    out = result.stdout
    assert out.startswith(f"ewfd: {path}: ok\n"), out
    assert "e2eapp:engine" in out and "templates" in out
    assert str(daemon.db) in out and "created at the first start" in out
    assert "orders (3 workers)" in out and "default (2 workers)" in out
    assert not daemon.db.exists()
    assert not daemon.log_path.exists()
    assert result.stderr == ""


@pytest.mark.timeout(60)
def test_check_with_flags_and_an_existing_database(daemon: Daemon) -> None:
    daemon.start()
    assert daemon.stop() == 0
    assert daemon.config_path is not None
    daemon.config_path.unlink()         # no ./ewfd.toml: the flags are the whole config
    result = ewfd(daemon, "run", "--check", "--app", "e2eapp:engine", "--db", "ewfd.db",
                  "--queue", "q=2")
    assert result.returncode == 0, result
    assert result.stdout.startswith("ewfd: command line: ok\n"), result.stdout
    assert f"{daemon.db} (exists" in result.stdout
    assert "q (2 workers)" in result.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("case", "expected"), [
    ("app", "ewfd.app: cannot import 'no_such_module_e2e'"),
    ("database dir", "ewfd.database: cannot create"),
    ("not a database", "ewfd.database:"),
    ("log dir", "ewfd.log_file: cannot open"),
    ("key", "ewfd.wokers: unknown key"),
])
def test_check_fails_with_exit_2_and_the_problem(daemon: Daemon, case: str,
                                                 expected: str) -> None:
    settings: dict[str, str] = {
        "app": {"app": "no_such_module_e2e:engine"},
        "database dir": {"database": str(daemon.dir / "missing" / "x.db")},
        "not a database": {"database": str(daemon.dir / "garbage.db")},
        "log dir": {"log_file": str(daemon.dir / "missing" / "x.log")},
        "key": {"wokers": "2"},
    }[case]
    (daemon.dir / "garbage.db").write_text("this is not SQLite, " * 100)
    path = daemon.configure(settings)
    result = ewfd(daemon, "run", "--check", "--config", str(path))
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ewfd: "), result.stderr
    assert expected in lines[0], lines[0]


# -- item 2: what SIGHUP applies -------------------------------------------------------------
@pytest.mark.timeout(60)
def test_hup_applies_log_level_and_log_file_to_the_supervisor_and_new_workers(
        daemon: Daemon) -> None:
    daemon.start()
    old_workers = set(daemon.worker_pids())
    old_log = daemon.log_path
    new_log = daemon.dir / "new.log"
    daemon.configure({"log_file": str(new_log), "log_level": "warning"})
    daemon.send_signal(signal.SIGHUP)
    daemon.wait_for_log(event("supervisor.log_moved", to=str(new_log)))
    wait_until(lambda: len(daemon.worker_pids()) == 2
               and not old_workers & set(daemon.worker_pids()), 15, "the workers replaced")
    daemon.log_path = new_log
    ok = daemon.insert_job("three", {"n": 1})        # info lines only: none at warning
    daemon.wait_for_status(ok, "completed")
    dies = daemon.insert_job("exiter", {"n": 2})     # its worker dies: warnings, logged
    daemon.wait_for_log(event("worker.exited", exit_code=1))
    daemon.wait_for_log(event("workflow.interrupted", workflow_uuid=dies))
    new_lines = read_json_lines(new_log)
    assert all(line["level"] in ("warning", "error") for line in new_lines), new_lines
    assert not [line for line in new_lines if line.get("workflow_uuid") == ok]
    old_lines = read_json_lines(old_log)
    moved = [i for i, line in enumerate(old_lines) if line["event"] == "supervisor.log_moved"]
    assert len(moved) == 1
    assert not [line for line in old_lines[moved[0] + 1:] if line["pid"] == daemon.pid]
    assert daemon.stop() == 0


@pytest.mark.timeout(60)
def test_hup_warns_once_about_keys_that_need_a_restart(daemon: Daemon) -> None:
    daemon.start()
    daemon.configure({"database": str(daemon.dir / "other.db"), "app": "procapp:engine",
                      "log_level": "debug"})
    daemon.send_signal(signal.SIGHUP)
    warning = daemon.wait_for_log(event("supervisor.reload_needs_restart"))
    assert warning["level"] == "warning"
    assert warning["keys"] == ["app", "database"]
    assert warning["database"] == {"running": str(daemon.db),
                                   "config": str(daemon.dir / "other.db")}
    daemon.wait_for_log(event("supervisor.reloaded"))
    assert len(daemon.events("supervisor.reload_needs_restart")) == 1
    uuid = daemon.insert_job("three", {"n": 1})      # still the old app on the old database
    daemon.wait_for_status(uuid, "completed")
    daemon.wait_for_log(event("step.started", workflow_uuid=uuid))
    assert not (daemon.dir / "other.db").exists()
    assert daemon.stop() == 0
