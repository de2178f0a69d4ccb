"""Text that is not valid UTF-8, and state type tags, under the daemon and ``ewfd ctl``.

A lone surrogate (a JSON ``\\ud83d`` escape, or a file name of other bytes as
``os.listdir`` gives it) must never crash a worker or re-run a step: state and
metadata come back exactly; error texts, log fields and printed output are
escaped; ctl arguments that are not UTF-8 are refused. A state type tag must
never import a module (issue 10, items C6 and G17).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import HERE, Daemon, event

pytestmark = pytest.mark.e2e


def start(daemon: Daemon) -> Daemon:
    daemon.configure({"app": "textapp:engine"}, {"default": {"workers": 1}})
    return daemon.start()


def runs(daemon: Daemon, uuid: str) -> list[str]:
    """The steps of ``uuid`` as textapp recorded them, once per execution."""
    path = daemon.dir / "effects.txt"
    text = path.read_text() if path.exists() else ""
    return [line.split()[1] for line in text.splitlines() if line.split()[0] == uuid]


def no_crash(daemon: Daemon) -> None:
    assert daemon.events("worker.crashed") == []
    assert daemon.events("worker.exited") == []


def odd_dir(tmp_path: Path) -> Path:
    """A directory holding a file whose name is not UTF-8, and one whose name is."""
    where = tmp_path / "files"
    where.mkdir()
    (where / "plain.txt").write_text("x")
    fd = os.open(os.fsencode(where) + b"/caf\xff.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    return where


def ctl(daemon: Daemon, *args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    assert daemon.config_path is not None
    return subprocess.run([sys.executable, "-m", "ewfd", "ctl", *args, "--config",
                           str(daemon.config_path)], capture_output=True, timeout=30,
                          env=daemon.env())


# -- C6: values that are not valid UTF-8 ------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_lone_surrogate_in_sql_state_and_metadata_round_trips(daemon: Daemon) -> None:
    start(daemon)
    with contextlib.closing(daemon.connect()) as conn, conn:
        cur = conn.execute(
            "INSERT INTO jobs (queue, workflow, state, metadata) VALUES (?, ?, ?, ?)",
            ("default", "greet", '{"name": "caf\\ud83d"}', '{"tag": "x\\udcff"}'))
        uuid = conn.execute("SELECT uuid FROM jobs WHERE id = ?", (cur.lastrowid,)).fetchone()[0]

    row = daemon.wait_for_status(uuid, ["completed", "failed"])
    assert (row["status"], row["error"]) == ("completed", None)
    assert json.loads(row["state"]) == {"name": "caf\ud83d", "greeting": "Hello, caf\ud83d"}
    assert json.loads(row["metadata"]) == {"tag": "x\udcff"}
    assert runs(daemon, uuid) == ["greet"]
    assert [h["outcome"] for h in daemon.history(uuid)] == ["completed"]
    line = daemon.wait_for_log(event("greet.name", workflow_uuid=uuid))
    assert line["name"] == "caf\ud83d"      # a log field: a JSON escape, read back exactly
    no_crash(daemon)


@pytest.mark.timeout(60)
def test_file_names_that_are_not_utf8_round_trip_through_state(daemon: Daemon,
                                                                tmp_path: Path) -> None:
    start(daemon)
    uuid = daemon.insert_job("listing", {"dir": str(odd_dir(tmp_path))})

    row = daemon.wait_for_status(uuid, ["completed", "failed"])
    assert (row["status"], row["error"]) == ("completed", None)
    files = json.loads(row["state"])["files"]
    assert files == ["caf\udcff.txt", "plain.txt"]
    assert os.fsencode(files[0]) == b"caf\xff.txt"     # the same file, byte for byte
    assert runs(daemon, uuid) == ["list"]
    no_crash(daemon)


@pytest.mark.timeout(60)
def test_an_error_quoting_a_name_that_is_not_utf8_fails_the_step_once(daemon: Daemon,
                                                                      tmp_path: Path) -> None:
    start(daemon)
    uuid = daemon.insert_job("complain", {"dir": str(odd_dir(tmp_path))})

    row = daemon.wait_for_status(uuid, ["completed", "failed"])
    text = "cannot import caf\\udcff.txt: bad header"     # escaped, readable
    assert (row["status"], row["error"]) == ("failed", f"step complain: {text}")
    assert [(h["outcome"], h["error"]) for h in daemon.history(uuid)] == [("failed", text)]
    assert runs(daemon, uuid) == ["complain"]
    line = daemon.wait_for_log(event("step.failed", workflow_uuid=uuid))
    assert line["error"] == text
    no_crash(daemon)


@pytest.mark.timeout(60)
def test_output_that_is_not_utf8_is_logged_escaped(daemon: Daemon) -> None:
    start(daemon)
    uuid = daemon.insert_job("chatter")

    row = daemon.wait_for_status(uuid, ["completed", "failed"])
    assert (row["status"], row["error"]) == ("completed", None)
    daemon.wait_for_log(lambda line: line.get("event") == "worker.output"
                        and "text caf" in line.get("output", ""))
    outputs = [line["output"] for line in daemon.events("worker.output")]
    assert "raw caf\\xff bytes" in outputs
    assert "text caf\\udcff str" in outputs
    assert runs(daemon, uuid) == ["chatter"]
    no_crash(daemon)


@pytest.mark.timeout(90)
def test_ctl_enqueue_show_and_list_state_holding_a_lone_surrogate(daemon: Daemon) -> None:
    start(daemon)
    done = ctl(daemon, "enqueue", "greet", "--state", '{"name": "caf\\ud83d"}',
               "--meta", b"who=caf\xff")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    uuid = done.stdout.decode().strip()

    daemon.wait_for_status(uuid, "completed")
    shown = ctl(daemon, "show", uuid, "--json")
    assert shown.returncode == 0, shown.stderr.decode(errors="replace")
    data = json.loads(shown.stdout)
    assert data["state"] == {"name": "caf\ud83d", "greeting": "Hello, caf\ud83d"}
    assert data["metadata"] == {"who": "caf\udcff"}
    for args in (("show", uuid), ("workflows",), ("workflows", "--json")):
        listed = ctl(daemon, *args)
        assert listed.returncode == 0, (args, listed.stderr.decode(errors="replace"))
        assert b"Traceback" not in listed.stderr
    assert b"caf\\ud83d" in ctl(daemon, "show", uuid).stdout     # the text view escapes it
    no_crash(daemon)


@pytest.mark.timeout(60)
def test_ctl_refuses_arguments_that_are_not_utf8(daemon: Daemon, tmp_path: Path) -> None:
    start(daemon)
    bad_state = tmp_path / "state.json"
    bad_state.write_bytes(b'{"name": "caf\xff"}')
    cases: list[tuple[tuple[str | bytes, ...], bytes]] = [
        (("enqueue", "greet", "--display-name", b"caf\xff"), b"--display-name"),
        (("enqueue", b"gr\xffeet"), b"NAME"),
        (("enqueue", "greet", "--queue", b"q\xff"), b"--queue"),
        (("enqueue", "greet", "--state", f"@{bad_state}"), b"UTF-8"),
        (("show", b"\xff"), b"UUID"),
        (("pause", b"q\xff"), b"QUEUE"),
        (("workflows", "--queue", b"q\xff"), b"--queue"),
    ]
    for args, names in cases:
        result = ctl(daemon, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert b"Traceback" not in result.stderr, (args, result.stderr)
        assert names in result.stderr and b"UTF-8" in result.stderr, (args, result.stderr)
    with contextlib.closing(daemon.connect()) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0


@pytest.mark.timeout(60)
def test_paths_that_are_not_utf8_are_paths_and_messages_about_them_print(
        daemon: Daemon, tmp_path: Path) -> None:
    start(daemon)
    odd = os.fsencode(tmp_path) + b"/caf\xff"
    os.mkdir(odd)
    with contextlib.closing(daemon.connect()) as conn, \
            contextlib.closing(sqlite3.connect(os.fsdecode(odd + b"/copy.db"))) as copy:
        conn.backup(copy)
    env = daemon.env()
    listed = subprocess.run([sys.executable, "-m", "ewfd", "ctl", "queues", "--db",
                             odd + b"/copy.db"], capture_output=True, timeout=30, env=env)
    assert listed.returncode == 0, listed.stderr
    assert b"default" in listed.stdout
    for command, code in ((["ctl", "queues", "--db", odd + b"/missing.db"], 1),
                          (["run", "--config", odd + b"/missing.toml"], 2)):
        result = subprocess.run([sys.executable, "-m", "ewfd", *command], capture_output=True,
                                timeout=30, env=env)
        assert result.returncode == code, (command, result.stderr)
        assert b"Traceback" not in result.stderr
        assert b"caf\\udcff/missing" in result.stderr      # the path, escaped


# -- G17: state type tags ----------------------------------------------------------------------
SIDE_EFFECT = '''\
import os
from dataclasses import dataclass

with open(os.path.join({where!r}, "imported-" + __name__), "w") as fh:
    fh.write("imported")

@dataclass
class Thing:
    value: int = 0
'''


def side_effect_module(where: Path, name: str) -> Path:
    """A module that, when imported, leaves ``imported-<name>`` in ``where``."""
    (where / f"{name}.py").write_text(SIDE_EFFECT.format(where=str(where)))
    return where / f"imported-{name}"


@pytest.mark.timeout(60)
def test_a_type_tag_in_a_sql_row_never_imports_a_module(daemon: Daemon, tmp_path: Path) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    marker = side_effect_module(modules, "sidefx_daemon")
    daemon.extra_env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(modules)])
    start(daemon)
    state: dict[str, Any] = {"name": "x", "thing": {"__ewfd_type__": "sidefx_daemon:Thing"}}
    uuid = daemon.insert_job("greet", state)

    row = daemon.wait_for_status(uuid, ["completed", "failed"])
    assert row["status"] == "failed"
    assert "'sidefx_daemon:Thing'" in row["error"] and "state_type" in row["error"]
    assert not marker.exists()
    assert runs(daemon, uuid) == []
    line = daemon.wait_for_log(event("job.rejected", workflow_uuid=uuid))
    assert "sidefx_daemon:Thing" in line["error"]
    no_crash(daemon)
