"""``ewfd ctl`` in process (CliRunner) against real SQLite files made with the Engine API.

Each test gets a database holding workflows in every status, made by running
them for real with an in-process :class:`Worker`; the daemon itself is
exercised in ``tests/e2e/test_ctl_daemon.py``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ewfd import (
    Engine,
    QueueSpec,
    RetryPolicy,
    SQLiteStore,
    Step,
    StepContext,
    WorkflowStatus,
    WorkflowTemplate,
    backoff,
    identity,
    runtime,
    state_type,
)
from ewfd.cli import common, main
from ewfd.logtail import LogFilter, tail
from ewfd.worker import Worker

WORKFLOW_KEYS = {"uuid", "name", "queue", "status", "current_step", "display_name", "metadata",
                 "error", "created_at", "updated_at"}
HISTORY_KEYS = {"step", "attempt", "started_at", "finished_at", "duration_ms", "outcome", "error",
                "worker_pid"}
QUEUE_KEYS = {"queue", "workers", "paused", "pending", "running", "completed", "failed",
              "cancelled", "oldest_pending_age_s"}
WORKER_KEYS = {"pid", "role", "queue", "state", "workflow_uuid", "step", "rss_bytes",
               "cpu_percent", "alive"}


@state_type
@dataclass
class Parcel:
    weight: int


@dataclass
class Fixture:
    db: Path
    engine: Engine
    store: SQLiteStore
    uuids: dict[str, str] = field(default_factory=dict)
    fixed: dict[str, bool] = field(default_factory=lambda: {"flaky": False})

    def drain(self, queue: str = "default") -> None:
        Worker(self.engine, self.store, QueueSpec(queue)).drain()

    def status(self, uuid: str) -> WorkflowStatus:
        return self.store.load_workflow(uuid).status


@pytest.fixture
def fx(tmp_path: Path) -> Iterator[Fixture]:
    """A database with templates, two queues and workflows completed, failed, pending."""
    store = SQLiteStore(tmp_path / "ewfd.db")
    engine = Engine(store)
    f = Fixture(tmp_path / "ewfd.db", engine, store)

    @engine.activity("ok")
    def ok(ctx: StepContext, state: dict[str, Any]) -> None:
        state["ok"] = state.get("ok", 0) + 1

    @engine.activity("flaky")
    def flaky(ctx: StepContext, state: dict[str, Any]) -> None:
        if not f.fixed["flaky"]:
            raise RuntimeError("disk full")

    engine.register_template("good", WorkflowTemplate(steps=[
        Step("ok", retry=RetryPolicy(3, backoff.constant(2.0)), timeout=30.0), Step("ok")]))
    engine.register_template("bad", WorkflowTemplate(steps=[Step("ok"), Step("flaky")]))
    engine.create_queue("default", workers=2)
    engine.create_queue("other")
    for key, name, queue in (("completed", "good", "default"), ("failed", "bad", "default")):
        wf = engine.new_workflow(name, queue=queue, state={"parcel": Parcel(3)},
                                 display_name=key, metadata={"team": "ops"})
        f.uuids[key] = engine.run(wf).uuid
        f.drain()
    f.uuids["pending"] = engine.run(engine.new_workflow("good", queue="other")).uuid
    yield f
    engine.close()


def ctl(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["ctl", *args], input=input)


def ok_json(*args: str) -> Any:
    result = ctl(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- queues, workflows, show, templates ------------------------------------------------------
def test_queues_json_and_table(fx: Fixture) -> None:
    rows = {r["queue"]: r for r in ok_json("queues", "--db", str(fx.db))}
    assert set(rows) == {"default", "other"}
    assert set(rows["default"]) >= QUEUE_KEYS
    assert (rows["default"]["completed"], rows["default"]["failed"]) == (1, 1)
    assert rows["other"]["pending"] == 1 and rows["other"]["oldest_pending_age_s"] >= 0
    assert rows["default"]["workers"] == 2 and rows["default"]["paused"] is False
    text = ctl("queues", "--db", str(fx.db)).stdout
    assert text.splitlines()[0].split()[:3] == ["QUEUE", "WORKERS", "PAUSED"]
    assert "\x1b[" not in text      # no colour when not a terminal


def test_workflows_filters_and_shape(fx: Fixture) -> None:
    rows = ok_json("workflows", "--db", str(fx.db))
    assert [r["uuid"] for r in rows] == [fx.uuids[k] for k in ("pending", "failed", "completed")]
    assert all(set(r) >= WORKFLOW_KEYS for r in rows)
    assert rows[1]["created_at"].endswith("Z") and rows[1]["metadata"] == {"team": "ops"}
    failed = ok_json("workflows", "--db", str(fx.db), "--status", "failed")
    assert [r["uuid"] for r in failed] == [fx.uuids["failed"]]
    assert failed[0]["error"] == "step flaky: disk full" and failed[0]["step"] == "flaky"
    assert [r["uuid"] for r in ok_json("workflows", "--db", str(fx.db), "--queue", "other")] == [
        fx.uuids["pending"]]
    assert len(ok_json("workflows", "--db", str(fx.db), "--limit", "1")) == 1
    result = ctl("workflows", "--db", str(fx.db), "--limit", "1")
    assert fx.uuids["pending"] in result.stdout and "--limit" in result.stderr
    assert ctl("workflows", "--db", str(fx.db), "--status", "sleeping").exit_code == 2


def test_show_has_raw_state_and_history(fx: Fixture) -> None:
    wf = ok_json("show", fx.uuids["failed"], "--db", str(fx.db))
    assert set(wf) >= WORKFLOW_KEYS and wf["status"] == "failed"
    # raw JSON: the typed value stays a tagged dict, nothing of the app is imported
    assert wf["state"]["parcel"]["weight"] == 3 and "__ewfd_type__" in wf["state"]["parcel"]
    assert [(h["step"], h["outcome"]) for h in wf["history"]] == [("ok", "completed"),
                                                                  ("flaky", "failed")]
    assert all(set(h) >= HISTORY_KEYS for h in wf["history"])
    assert wf["history"][1]["error"] == "disk full"
    assert wf["history"][1]["worker_pid"] == os.getpid()
    text = ctl("show", fx.uuids["failed"], "--db", str(fx.db)).stdout
    assert "history" in text and "disk full" in text and '"weight": 3' in text


def test_show_unknown_uuid_exits_1(fx: Fixture) -> None:
    result = ctl("show", "no-such-uuid", "--db", str(fx.db))
    assert result.exit_code == 1
    assert result.stderr == "ewfd: no workflow no-such-uuid\n" and result.stdout == ""


def test_templates(fx: Fixture) -> None:
    rows = {t["name"]: t for t in ok_json("templates", "--db", str(fx.db))}
    assert set(rows) == {"good", "bad"}
    first = rows["good"]["steps"][0]
    assert first["name"] == "ok" and first["timeout"] == 30.0
    assert first["retry"]["max_attempts"] == 3
    assert first["retry"]["backoff"] == {"type": "constant", "interval": 2.0}
    text = ctl("templates", "--db", str(fx.db)).stdout
    assert "constant 2s" in text and "30s" in text


# -- enqueue ----------------------------------------------------------------------------------
def test_enqueue_prints_bare_uuid_and_stores_steps(fx: Fixture) -> None:
    result = ctl("enqueue", "good", "--db", str(fx.db), "--state", '{"n": 1}',
                 "--display-name", "by hand", "--meta", "k=v", "--meta", "team=ops")
    assert result.exit_code == 0, result.output
    uuid = result.stdout.strip()
    wf = fx.store.load_workflow(uuid)
    assert (wf.status, wf.queue, wf.display_name) == (WorkflowStatus.PENDING, "default", "by hand")
    assert wf.state == {"n": 1} and wf.metadata == {"k": "v", "team": "ops"}
    assert [s.name for s in wf.steps] == ["ok", "ok"] and wf.steps[0].max_attempts == 3
    fx.drain()
    assert fx.status(uuid) == WorkflowStatus.COMPLETED
    assert set(ok_json("enqueue", "good", "--db", str(fx.db), "--queue", "other")) == {"uuid"}


def test_enqueue_state_from_file(fx: Fixture, tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text('{"from": "file"}')
    uuid = ok_json("enqueue", "good", "--db", str(fx.db), "--state", f"@{tmp_path}/state.json")
    assert fx.store.load_workflow(uuid["uuid"]).state == {"from": "file"}


@pytest.mark.parametrize(("args", "code", "message"), [
    (["nope"], 1, "no workflow template 'nope' (known: bad, good)"),
    (["good", "--queue", "nowhere"], 1, "no queue 'nowhere' (known: default, other)"),
    (["good", "--state", "{not json"], 2, "not valid JSON"),
    (["good", "--state", "[1, 2]"], 2, "expected a JSON object"),
    (["good", "--meta", "novalue"], 2, "expected KEY=VALUE"),
])
def test_enqueue_errors(fx: Fixture, args: list[str], code: int, message: str) -> None:
    result = ctl("enqueue", *args, "--db", str(fx.db))
    assert result.exit_code == code
    assert message in result.stderr


# -- retry, cancel, pause, resume ---------------------------------------------------------------
def test_retry_failed_then_completes(fx: Fixture) -> None:
    uuid = fx.uuids["failed"]
    result = ctl("retry", uuid, "--db", str(fx.db))
    assert result.exit_code == 0 and result.stdout.startswith("retried 1 workflow")
    assert fx.status(uuid) == WorkflowStatus.PENDING
    fx.fixed["flaky"] = True
    fx.drain()
    wf = fx.store.load_workflow(uuid)
    assert wf.status == WorkflowStatus.COMPLETED and wf.state["ok"] == 1   # "ok" not rerun


def test_retry_json_and_what_does_not_apply(fx: Fixture) -> None:
    assert ok_json("retry", fx.uuids["failed"], "--db", str(fx.db)).items() >= {
        "changed": 1, "uuid": fx.uuids["failed"], "status": "pending"}.items()
    result = ctl("retry", fx.uuids["completed"], "--db", str(fx.db))
    assert result.exit_code == 1 and "is completed: only failed or cancelled" in result.stderr
    assert ctl("retry", "nope", "--db", str(fx.db)).exit_code == 1


def test_cancel_pending_and_running(fx: Fixture) -> None:
    result = ctl("cancel", fx.uuids["pending"], "--db", str(fx.db))
    assert (result.exit_code, result.stdout) == (0, "cancelled 1 workflow\n")
    assert fx.status(fx.uuids["pending"]) == WorkflowStatus.CANCELLED
    uuid = fx.engine.run(fx.engine.new_workflow("good", queue="other")).uuid
    claimed = fx.store.claim("other", "someone", 30.0)
    assert claimed is not None and claimed.workflow.uuid == uuid
    data = ok_json("cancel", uuid, "--db", str(fx.db))
    assert data.items() >= {"changed": 1, "uuid": uuid, "status": "running",
                            "cancel_requested": True}.items()
    assert fx.store.cancel_requested(claimed.lease)


def test_cancel_finished_or_unknown_exits_1(fx: Fixture) -> None:
    result = ctl("cancel", fx.uuids["completed"], "--db", str(fx.db))
    assert result.exit_code == 1 and "already completed" in result.stderr
    assert ctl("cancel", "nope", "--db", str(fx.db)).exit_code == 1


def test_pause_and_resume(fx: Fixture) -> None:
    result = ctl("pause", "other", "--db", str(fx.db))
    assert (result.exit_code, result.stdout) == (0, "paused queue other\n")
    assert fx.store.load_queue("other").paused
    assert fx.store.claim("other", "someone", 30.0) is None
    assert ok_json("pause", "other", "--db", str(fx.db)) == {
        "changed": 0, "queue": "other", "paused": True}
    assert ctl("resume", "other", "--db", str(fx.db)).stdout == "resumed queue other\n"
    fx.drain("other")
    assert fx.status(fx.uuids["pending"]) == WorkflowStatus.COMPLETED
    result = ctl("pause", "nowhere", "--db", str(fx.db))
    assert result.exit_code == 1 and "no queue 'nowhere'" in result.stderr


# -- prune --------------------------------------------------------------------------------------
def test_prune_needs_yes_without_a_terminal(fx: Fixture) -> None:
    result = ctl("prune", "--older-than", "0s", "--db", str(fx.db))
    assert result.exit_code == 2 and "pass --yes" in result.stderr
    assert fx.status(fx.uuids["completed"]) == WorkflowStatus.COMPLETED


def test_prune_deletes_finished_with_history(fx: Fixture) -> None:
    assert ok_json("prune", "--older-than", "0s", "--dry-run", "--db", str(fx.db))["matched"] == 1
    result = ctl("prune", "--older-than", "0s", "--status", "completed", "--status", "failed",
                 "--yes", "--db", str(fx.db))
    assert (result.exit_code, result.stdout) == (0, "pruned 2 workflows\n")
    assert [w.uuid for w in fx.store.list_workflows()] == [fx.uuids["pending"]]
    data = ok_json("prune", "--older-than", "0s", "--yes", "--db", str(fx.db))
    assert data["changed"] == 0 and data["statuses"] == ["completed"]


def test_prune_keeps_recent(fx: Fixture) -> None:
    result = ctl("prune", "--older-than", "7d", "--yes", "--db", str(fx.db))
    assert result.exit_code == 0 and "nothing to prune" in result.stdout
    assert fx.status(fx.uuids["completed"]) == WorkflowStatus.COMPLETED


def test_prune_asks_on_a_terminal(fx: Fixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "interactive", lambda: True)
    result = ctl("prune", "--older-than", "0s", "--db", str(fx.db), input="n\n")
    assert result.exit_code == 1 and "delete 1 workflow" in result.output
    assert fx.status(fx.uuids["completed"]) == WorkflowStatus.COMPLETED
    monkeypatch.setattr(common, "show_progress", lambda total, as_json: True)
    result = ctl("prune", "--older-than", "0s", "--db", str(fx.db), input="y\n")
    assert result.exit_code == 0 and result.stdout.endswith("pruned 1 workflow\n")
    assert "pruning" in result.stderr


@pytest.mark.parametrize("value", ["7", "7x", "-1d", "400d"])
def test_prune_bad_duration_exits_2(fx: Fixture, value: str) -> None:
    result = ctl("prune", "--older-than", value, "--yes", "--db", str(fx.db))
    assert result.exit_code == 2 and "--older-than" in result.stderr


# -- create-queue, close-queue ------------------------------------------------------------------
def test_create_update_close_queue(fx: Fixture) -> None:
    result = ctl("create-queue", "reports", "--workers", "3", "--poll-interval", "250ms",
                 "--max-memory", "512MiB", "--db", str(fx.db))
    assert (result.exit_code, result.stdout) == (0, "created queue reports (3 workers)\n")
    spec = fx.store.load_queue("reports")
    assert (spec.workers, spec.poll_interval, spec.max_memory) == (3, 0.25, 512 * 1024**2)
    data = ok_json("create-queue", "reports", "--lease", "1m", "--db", str(fx.db))
    assert data["changed"] == 1 and data["created"] is False
    spec = fx.store.load_queue("reports")
    assert (spec.workers, spec.lease) == (3, 60.0)    # what was not given is kept
    result = ctl("create-queue", "reports", "--lease", "1m", "--db", str(fx.db))
    assert result.stdout == "queue reports unchanged\n"
    assert ctl("close-queue", "reports", "--db", str(fx.db)).stdout == "closed queue reports\n"
    assert ctl("close-queue", "reports", "--db", str(fx.db)).exit_code == 1


@pytest.mark.parametrize("args", [["bad name!"], ["q", "--workers", "0"],
                                  ["q", "--poll-interval", "fast"], ["q", "--lease", "0s"]])
def test_create_queue_bad_usage(fx: Fixture, args: list[str]) -> None:
    assert ctl("create-queue", *args, "--db", str(fx.db)).exit_code == 2


def test_close_queue_with_work_needs_force(fx: Fixture) -> None:
    result = ctl("close-queue", "other", "--db", str(fx.db))
    assert result.exit_code == 1 and "1 pending" in result.stderr and "--force" in result.stderr
    closed = ok_json("close-queue", "other", "--force", "--db", str(fx.db))
    assert (closed["changed"], closed["queue"], closed["closed"]) == (1, "other", True)


# -- workers ------------------------------------------------------------------------------------
def write_runtime(db: Path, sup_pid: int, owner: str, worker_pids: list[int]) -> None:
    runtime.write(runtime.path_for(str(db)), {
        "supervisor": {"pid": sup_pid, "identity": owner, "started_at": 1.7e9},
        "updated_at": 1.7e9,
        "workers": [{"pid": p, "queue": "default", "state": "running", "tasks": 2,
                     "workflow_uuid": "u-1", "step": "ok"} for p in worker_pids]})


def test_workers_without_runtime_file(fx: Fixture) -> None:
    result = ctl("workers", "--db", str(fx.db), "--json")
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])
    assert "supervisor not running" in result.stderr


def test_workers_alive(fx: Fixture) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_runtime(fx.db, os.getpid(), identity.current(), [child.pid, 1])
        rows = ok_json("workers", "--db", str(fx.db))
    finally:
        child.kill()
        child.wait()
    assert all(set(r) >= WORKER_KEYS for r in rows)
    sup, worker, stranger = rows
    assert (sup["role"], sup["pid"], sup["alive"]) == ("supervisor", os.getpid(), True)
    assert sup["rss_bytes"] > 0 and sup["cpu_percent"] >= 0
    assert (worker["pid"], worker["alive"], worker["step"]) == (child.pid, True, "ok")
    assert stranger["alive"] is False     # pid 1 is not a child of our supervisor


def test_workers_of_a_dead_supervisor_are_dead(fx: Fixture) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_runtime(fx.db, gone.pid, f"{identity.current().split(':')[0]}:{gone.pid}:1",
                  [os.getpid()])
    result = ctl("workers", "--db", str(fx.db), "--json")
    assert result.exit_code == 0 and "supervisor not running" in result.stderr
    assert [r["alive"] for r in json.loads(result.stdout)] == [False, False]
    # a live pid that is not the process that wrote the file (pid reuse) is dead too
    write_runtime(fx.db, os.getpid(), f"{identity.current().rsplit(':', 1)[0]}:1", [])
    result = ctl("workers", "--db", str(fx.db))
    assert "dead" in result.stdout and "supervisor not running" in result.stderr


# -- finding the database, errors -----------------------------------------------------------------
def test_missing_database_exits_1(tmp_path: Path) -> None:
    result = ctl("queues", "--db", str(tmp_path / "none.db"))
    assert result.exit_code == 1
    assert result.stderr == (f"ewfd: no database at {tmp_path / 'none.db'} "
                             "(start ewfd run, or pass --db or --config)\n")
    assert not (tmp_path / "none.db").exists()
    assert ctl("retry", "x", "--db", str(tmp_path / "none.db")).exit_code == 1


def test_newer_schema_exits_1(fx: Fixture) -> None:
    conn = sqlite3.connect(fx.db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    result = ctl("queues", "--db", str(fx.db))
    assert result.exit_code == 1 and result.stderr.startswith("ewfd: ")
    assert "newer" in result.stderr and len(result.stderr.splitlines()) == 1


def test_config_finds_database(fx: Fixture, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "ewfd.toml"
    cfg.write_text('[ewfd]\napp = "x:engine"\ndatabase = "ewfd.db"\n')
    assert len(ok_json("workflows", "--config", str(cfg))) == 3
    monkeypatch.setenv("EWFD_CONFIG", str(cfg))
    assert len(ok_json("workflows")) == 3
    assert ctl("queues", "--config", str(tmp_path / "missing.toml")).exit_code == 2
    assert ctl("queues", "--config", str(cfg), "--db", str(fx.db)).exit_code == 2


@pytest.mark.parametrize("command", ["queues", "workflows", "show", "templates", "workers",
                                     "tail", "enqueue", "retry", "cancel", "pause", "resume",
                                     "prune", "create-queue", "close-queue"])
def test_every_subcommand_has_help_and_common_options(command: str) -> None:
    result = ctl(command, "--help")
    assert result.exit_code == 0
    assert all(opt in result.stdout for opt in ("--config", "--db", "--json"))


# -- tail ---------------------------------------------------------------------------------------
def log_record(event: str, level: str = "info", **kw: Any) -> str:
    return json.dumps({"timestamp": "2025-01-02T03:04:05.678901Z", "level": level,
                       "event": event, "pid": 42, **kw})


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "ewfd.log"
    path.write_text("\n".join([
        log_record("supervisor.started"),
        log_record("step.completed", workflow_uuid="aaaa-1", queue="q1", step="s", attempt=1),
        "Traceback (most recent call last): not json",
        log_record("workflow.failed", "error", workflow_uuid="bbbb-2", queue="q2",
                   error="step s: boom"),
    ]) + "\n")
    return path


def test_tail_human_and_filters(log_file: Path) -> None:
    lines = ctl("tail", "--file", str(log_file)).stdout.splitlines()
    assert len(lines) == 4 and lines[2] == "Traceback (most recent call last): not json"
    assert lines[1].startswith("2025-01-02 03:04:05.678 UTC  info")
    assert "step.completed" in lines[1] and "workflow_uuid=aaaa-1" in lines[1]
    assert lines[3].endswith('error="step s: boom"')
    only = ctl("tail", "--file", str(log_file), "--workflow", "aaaa").stdout.splitlines()
    assert len(only) == 1 and "aaaa-1" in only[0]
    assert len(ctl("tail", "--file", str(log_file), "--queue", "q2").stdout.splitlines()) == 1
    errors = ctl("tail", "--file", str(log_file), "--level", "error").stdout.splitlines()
    assert len(errors) == 2 and "workflow.failed" in errors[1]     # the raw line is kept
    assert len(ctl("tail", "--file", str(log_file), "-n", "2").stdout.splitlines()) == 2


def test_tail_json_prints_original_lines(log_file: Path) -> None:
    out = ctl("tail", "--file", str(log_file), "--json").stdout.splitlines()
    assert [json.loads(line)["event"] for line in out] == [
        "supervisor.started", "step.completed", "workflow.failed"]


def test_tail_errors(tmp_path: Path, fx: Fixture) -> None:
    cfg = tmp_path / "ewfd.toml"
    cfg.write_text('[ewfd]\napp = "x:engine"\n')
    result = ctl("tail", "--config", str(cfg))
    assert result.exit_code == 1 and "logs to stdout" in result.stderr
    assert ctl("tail", "--db", str(fx.db)).exit_code == 2
    result = ctl("tail", "--file", str(tmp_path / "none.log"))
    assert result.exit_code == 1 and "no log file" in result.stderr
    cfg.write_text('[ewfd]\napp = "x:engine"\nlog_file = "d.log"\n')
    (tmp_path / "d.log").write_text(log_record("x") + "\n")
    assert "x" in ctl("tail", "--config", str(cfg)).stdout


@pytest.mark.timeout(20)
def test_follow_sees_appends_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "ewfd.log"
    path.write_text(log_record("old") + "\n" + '{"event": "half')
    lines = tail(str(path), lines=5, follow=True, keep=LogFilter(), poll=0.01)
    assert next(lines).record == {**json.loads(log_record("old"))}
    with path.open("a") as fh:
        fh.write(' written"}\n' + log_record("new") + "\n")
    assert next(lines).record == {"event": "half written"}
    assert next(lines).record["event"] == "new"      # type: ignore[index]
    path.rename(tmp_path / "ewfd.log.1")
    path.write_text(log_record("rotated") + "\n")
    assert next(lines).record["event"] == "rotated"  # type: ignore[index]
    lines.close()


@pytest.mark.timeout(20)
def test_follow_filters(tmp_path: Path) -> None:
    path = tmp_path / "ewfd.log"
    path.write_text("")
    lines = tail(str(path), lines=0, follow=True, keep=LogFilter(workflow="aa"), poll=0.01)
    writer = threading.Timer(0.1, lambda: path.write_text(
        log_record("skip", workflow_uuid="bb") + "\nnot json\n" +
        log_record("keep", workflow_uuid="aa1") + "\n"))
    writer.start()
    assert next(lines).record["event"] == "keep"  # type: ignore[index]
    writer.join()
    lines.close()


def test_a_file_that_is_not_ewfd_is_left_alone(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE things (x)")
    conn.close()
    for args in (["queues"], ["pause", "default"], ["create-queue", "q"]):
        result = ctl(*args, "--db", str(other))
        assert result.exit_code == 1 and "is not an ewfd database" in result.stderr
    conn = sqlite3.connect(other)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    conn.close()
    assert tables == ["things"]


def test_workers_of_another_host_are_unknown(fx: Fixture) -> None:
    write_runtime(fx.db, 1, "elsewhere.example:1:1", [2])
    result = ctl("workers", "--db", str(fx.db), "--json")
    assert [r["alive"] for r in json.loads(result.stdout)] == [None, None]
    assert "runs on host elsewhere.example" in result.stderr


def test_colour_only_on_a_terminal(fx: Fixture, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["ctl", "workflows", "--db", str(fx.db)]
    assert "\x1b[31" in CliRunner().invoke(main, args, color=True).stdout   # failed in red
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in CliRunner().invoke(main, args, color=True).stdout
