"""``ewfd ctl`` (as a subprocess) on a database whose every table holds rows written badly by
hand (issue 10, D9): every listing still works and shows what it can."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ewfd import Engine, QueueSpec, SQLiteStore, Step, WorkflowTemplate
from ewfd.worker import Worker


def ctl(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ewfd", "ctl", *args, "--db", str(db)],
                          capture_output=True, text=True, timeout=60, check=False)


def ok(db: Path, *args: str) -> Any:
    result = ctl(db, *args, "--json")
    assert result.returncode == 0 and not result.stderr, (args, result.stderr)
    text = ctl(db, *args)
    assert text.returncode == 0 and "Traceback" not in text.stderr, (args, text.stderr)
    return json.loads(result.stdout)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    """Good rows made by the API, then bad ones made by hand in every table."""
    path = tmp_path / "ewfd.db"
    store = SQLiteStore(path)
    engine = Engine(store)
    engine.register("a", lambda ctx, state: None)
    engine.register_template("good", WorkflowTemplate(steps=[Step("a")]))
    engine.create_queue("default")
    good = engine.run(engine.new_workflow("good", queue="default"))
    Worker(engine, store, QueueSpec("default")).drain()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.executescript("""
            INSERT INTO queues (name, lease) VALUES ('lease', 0.5);
            INSERT INTO queues (name, workers) VALUES ('neg', -1);
            INSERT INTO queues (name, workers, poll_interval) VALUES ('text', 'two', 'x');
            INSERT INTO queues (name, paused) VALUES ('maybe', 'perhaps');
            INSERT INTO queues (name, max_memory, updated_at) VALUES ('mem', 1.5, 'then');
            INSERT INTO templates (name, steps) VALUES ('broken', 'not json');
            INSERT INTO templates (name, steps) VALUES ('empty', '[]');
            INSERT INTO templates (name, steps) VALUES ('nameless', '[{"nme": "a"}]');
            INSERT INTO jobs (queue, workflow) VALUES (NULL, 'good');
            INSERT INTO jobs (queue, workflow, metadata, steps, error, display_name)
                VALUES (x'ff00', 'good', '[1]', 'nope', x'00ff', 7);
            PRAGMA ignore_check_constraints = ON;
            INSERT INTO jobs (queue, workflow, status, current_step, created_at, updated_at,
                              state) VALUES ('default', 'good', 'done', 'x', 'garbage', 'x', 7);
            INSERT INTO jobs (queue, workflow, status, current_step)
                VALUES ('default', 'good', 'running', -1);
            PRAGMA ignore_check_constraints = OFF;
        """)
        job = conn.execute("SELECT id FROM jobs WHERE uuid=?", (good.uuid,)).fetchone()[0]
        conn.execute("INSERT INTO history (job_id, step, step_index, attempt, started_at, "
                     "finished_at, duration_ms, outcome, error, worker_pid) VALUES "
                     "(?, x'00', 'one', 'first', 'yesterday', 'today', 'long', 7, x'ff', 'me')",
                     (job,))
    engine.close()
    yield path


def test_every_listing_works_on_bad_rows(db: Path) -> None:
    queues = {q["queue"]: q for q in ok(db, "queues")}
    assert {"default", "lease", "neg", "text", "maybe", "mem", None} <= set(queues)
    assert "lease" in queues["lease"]["invalid"] and "workers" in queues["neg"]["invalid"]
    assert "paused" in queues["maybe"]["invalid"] and "max_memory" in queues["mem"]["invalid"]
    assert "invalid" not in queues["default"]
    assert queues[None]["pending"] == 1

    listed = ok(db, "workflows")
    assert len(listed) == 5
    odd = [w for w in listed if w["name"] == "good" and w["error"] and "status" in w["error"]]
    assert odd and odd[0]["status"] == "failed"       # 'done' is no status: shown as failed
    uuid = next(w["uuid"] for w in listed if w["status"] == "completed")
    shown = ok(db, "show", uuid)
    assert len(shown["history"]) == 2 and shown["history"][1]["attempt"] == 0

    templates = {t["name"]: t["steps"] for t in ok(db, "templates")}
    assert templates["good"] and templates["broken"] == templates["empty"] == []
    assert templates["nameless"] == []


def test_actions_on_bad_rows_fail_with_one_line_or_repair(db: Path) -> None:
    result = ctl(db, "enqueue", "broken")
    assert result.returncode == 1 and "templates row 'broken'" in result.stderr
    result = ctl(db, "enqueue", "good", "--queue", "neg")
    assert result.returncode == 1 and "workers" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    fixed = ctl(db, "create-queue", "neg", "--workers", "2", "--json")   # a bad row is replaced
    assert fixed.returncode == 0, fixed.stderr
    queues = {q["queue"]: q for q in ok(db, "queues")}
    assert queues["neg"]["workers"] == 2 and "invalid" not in queues["neg"]
    assert ctl(db, "enqueue", "good", "--queue", "neg").returncode == 0
