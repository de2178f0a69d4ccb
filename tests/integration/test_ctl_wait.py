"""``ewfd ctl enqueue --wait`` in process (CliRunner), with an in-process worker thread that
has its own connection, as the daemon's workers do. The daemon runs it in
``tests/e2e/test_enqueue_wait.py``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from click.testing import CliRunner, Result

from ewfd import Engine, SQLiteStore, Step, WorkflowTemplate
from ewfd.cli import main
from ewfd.worker import Worker

LONG = 30.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "ewfd.db"
    engine = make_engine(path)
    engine.create_queue("default", poll_interval=LONG)
    engine.close()
    return path


def make_engine(path: Path) -> Engine:
    engine = Engine(store=SQLiteStore(path))
    engine.register("double", lambda ctx, state: state.update(n=state["n"] * 2))

    def boom(ctx: Any, state: dict[str, Any]) -> None:
        raise RuntimeError("card declined")

    engine.register("boom", boom)
    engine.register_template("double", WorkflowTemplate(steps=[Step("double")]))
    engine.register_template("boom", WorkflowTemplate(steps=[Step("boom")]))
    return engine


@pytest.fixture
def worker(db: Path) -> Iterator[None]:
    """A worker thread on the default queue with its own store (its own connection)."""
    engine = make_engine(db)
    w = Worker(engine, engine.store, engine.store.load_queue("default"))
    thread = threading.Thread(target=w.run)
    with structlog.testing.capture_logs():     # its log lines must not reach ctl's stdout
        thread.start()
        try:
            yield
        finally:
            w.stop.set()
            engine.create_queue("wake-up")    # a write ends the worker's wait: it sees stop
            thread.join(LONG)
            engine.close()


def ctl(db: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["ctl", *args, "--db", str(db)], catch_exceptions=False)


@pytest.mark.timeout(60)
def test_wait_prints_the_uuid_the_status_and_the_state(db: Path, worker: None) -> None:
    result = ctl(db, "enqueue", "double", "--state", '{"n": 21}', "--wait",
                 "--timeout", "30s")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines[0]) == 36 and lines[1] == "completed"
    assert json.loads("\n".join(lines[2:])) == {"n": 42}


@pytest.mark.timeout(60)
def test_wait_json_of_a_failed_workflow_exits_1(db: Path, worker: None) -> None:
    result = ctl(db, "enqueue", "boom", "--wait", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["status"] == "failed" and data["error"] == "step boom: card declined"
    assert data["state"] == {} and "history" not in data


@pytest.mark.timeout(60)
def test_wait_without_a_daemon_says_so_and_times_out_with_124(db: Path) -> None:
    result = ctl(db, "enqueue", "double", "--state", '{"n": 1}', "--wait", "--timeout", "200ms")
    assert result.exit_code == 124
    uuid = result.stdout.strip()
    assert "no ewfd run is serving this database" in result.stderr
    assert f"ewfd: workflow {uuid} is still pending after 0.2s: it carries on" in result.stderr
