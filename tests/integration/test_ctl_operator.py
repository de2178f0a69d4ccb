"""``ewfd ctl`` the way operators use it (issue 14): several uuids and unique prefixes,
filters with a count and a confirmation, progress in batches, options before or after the
subcommand, the config found where systemd's is, queues apart from names that are not
queues, steps that never ran, one timestamp format, and a second cancel that is no
change. In process (CliRunner) against real SQLite files, like ``test_ctl.py``."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import test_ctl
from test_ctl import Fixture, ctl, ok_json

from ewfd import WorkflowStatus, config
from ewfd.cli import common
from ewfd.model import WorkflowQuery
from ewfd.store.sqlite import SQLiteStore

S = WorkflowStatus
fx = test_ctl.fx        # the fixture: a database with workflows in every status


def failed(f: Fixture, n: int, queue: str = "default") -> list[str]:
    """``n`` more failed workflows (``bad`` fails at its step ``flaky``)."""
    uuids = [f.engine.run(f.engine.new_workflow("bad", queue=queue)).uuid for _ in range(n)]
    f.drain(queue)
    assert all(f.status(u) == S.FAILED for u in uuids)
    return uuids


def insert_rows(db: Path, n: int, **columns: Any) -> None:
    """``n`` jobs rows by SQL, as an outside program would insert them."""
    names = ", ".join(["workflow", *columns])
    marks = ", ".join("?" * (1 + len(columns)))
    with sqlite3.connect(db) as conn:
        conn.executemany(f"INSERT INTO jobs ({names}) VALUES ({marks})",
                         [("good", *columns.values())] * n)
    conn.close()


# -- item 6: several uuids, prefixes, filters --------------------------------------------------
def test_retry_takes_several_uuids_and_unique_prefixes(fx: Fixture) -> None:
    more = failed(fx, 2)
    refs = [fx.uuids["failed"], more[0][:13], more[1][:8]]
    data = ok_json("retry", *refs, "--db", str(fx.db))
    assert data["changed"] == 3 and data["uuids"] == [fx.uuids["failed"], *more]
    assert all(fx.status(u) == S.PENDING for u in [fx.uuids["failed"], *more])
    result = ctl("retry", fx.uuids["failed"], fx.uuids["failed"][:6], "--db", str(fx.db))
    assert result.exit_code == 1 and "is pending: only failed or cancelled" in result.stderr


def test_show_and_cancel_take_a_prefix(fx: Fixture) -> None:
    uuid = fx.uuids["pending"]
    assert ok_json("show", uuid[:5], "--db", str(fx.db))["uuid"] == uuid
    assert ok_json("cancel", uuid[:7], "--db", str(fx.db))["uuid"] == uuid
    assert fx.status(uuid) == S.CANCELLED


def test_an_ambiguous_prefix_is_refused_with_its_candidates(fx: Fixture) -> None:
    for uuid in ("order-1", "order-2", "order-10"):
        fx.engine.run(fx.engine.new_workflow("good", queue="other", uuid=uuid))
    result = ctl("cancel", "order", "--db", str(fx.db))
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("ewfd: 'order' is the start of 3 workflow uuids (")
    assert all(u in result.stderr for u in ("order-1", "order-2", "order-10"))
    assert fx.status("order-1") == S.PENDING                    # nothing was done
    assert ok_json("show", "order-1", "--db", str(fx.db))["uuid"] == "order-1"   # exact wins
    assert ctl("show", "order-3", "--db", str(fx.db)).exit_code == 1
    # a bulk action resolves every name before it changes anything
    result = ctl("cancel", "order-2", "nope", "--db", str(fx.db))
    assert result.exit_code == 1 and "no workflow nope" in result.stderr
    assert fx.status("order-2") == S.PENDING


def test_a_filter_shows_the_count_and_asks(fx: Fixture, monkeypatch: pytest.MonkeyPatch) -> None:
    more = failed(fx, 2)
    result = ctl("retry", "--status", "failed", "--db", str(fx.db))
    assert result.exit_code == 2 and result.stderr == (
        "ewfd: retry 3 workflows (failed workflows): pass --yes to confirm (stdin is not a "
        "terminal)\n")
    assert fx.status(more[0]) == S.FAILED
    monkeypatch.setattr(common, "interactive", lambda: True)
    result = ctl("retry", "--queue", "default", "--db", str(fx.db), input="n\n")
    assert result.exit_code == 1 and "retry 3 workflows (failed workflows of queue default)?" \
        in result.output
    result = ctl("retry", "--queue", "default", "--db", str(fx.db), input="y\n")
    assert result.exit_code == 0 and result.stdout.endswith(
        "retried 3 workflows: pending again\n")
    assert all(fx.status(u) == S.PENDING for u in [fx.uuids["failed"], *more])


def test_filters_narrow_by_error_name_since_and_queue(fx: Fixture) -> None:
    other = failed(fx, 1, "other")
    base = ["--db", str(fx.db), "--yes", "--json"]
    assert ok_json("retry", "--error", "no such text", *base[:3])["changed"] == 0
    assert ok_json("retry", "--workflow", "good", *base[:3])["matched"] == 0
    assert ok_json("retry", "--since", "1d", "--queue", "other", *base[:3])["uuids"] == other
    assert ok_json("retry", "--error", "DISK", "--workflow", "bad", *base[:3])["uuids"] == [
        fx.uuids["failed"]]
    result = ctl("retry", "--error", "disk", "--db", str(fx.db), "--yes")
    assert (result.exit_code, result.stdout) == (0, "nothing to retry: no failed workflows "
                                                    "with an error containing 'disk'\n")


def test_cancel_all_and_what_is_refused(fx: Fixture) -> None:
    result = ctl("cancel", "--db", str(fx.db))
    assert result.exit_code == 2 and "or select them with --status" in result.stderr
    result = ctl("cancel", fx.uuids["pending"], "--queue", "other", "--db", str(fx.db))
    assert result.exit_code == 2 and "not both" in result.stderr
    assert ctl("cancel", "--status", "failed", "--db", str(fx.db)).exit_code == 2   # n/a
    assert ctl("retry", "--status", "pending", "--db", str(fx.db)).exit_code == 2
    data = ok_json("cancel", "--all", "--yes", "--db", str(fx.db))
    assert data["changed"] == 1 and data["uuids"] == [fx.uuids["pending"]]
    assert ok_json("cancel", "--all", "--yes", "--db", str(fx.db))["changed"] == 0


def test_long_runs_go_in_batches_with_a_progress_bar(fx: Fixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    insert_rows(fx.db, 1200, queue="other", status="failed", error="step ok: boom")
    batches: list[int] = []
    real = SQLiteStore.retry_workflows

    def spy(self: SQLiteStore, uuids: list[str]) -> list[str]:
        batches.append(len(uuids))
        return real(self, uuids)

    monkeypatch.setattr(SQLiteStore, "retry_workflows", spy)
    monkeypatch.setattr(common, "show_progress", lambda total, as_json: True)
    result = ctl("retry", "--error", "boom", "--yes", "--db", str(fx.db))
    assert result.exit_code == 0, result.output
    assert result.stdout == "retried 1,200 workflows: pending again\n"
    assert batches == [500, 500, 200]               # one transaction each
    assert result.stderr.startswith("retry")      # the bar's label (drawn on a terminal)
    assert fx.store.count_workflows(WorkflowQuery(statuses=(S.PENDING,))) == 1201


def test_workflows_keeps_every_status_given(fx: Fixture) -> None:
    rows = ok_json("workflows", "--status", "failed", "--status", "pending", "--db", str(fx.db))
    assert {r["uuid"] for r in rows} == {fx.uuids["failed"], fx.uuids["pending"]}
    rows = ok_json("workflows", "--error", "disk", "--queue", "default", "--db", str(fx.db))
    assert [r["uuid"] for r in rows] == [fx.uuids["failed"]]


# -- item 13: a second cancel is no change ------------------------------------------------------
def test_a_second_cancel_reports_no_change(fx: Fixture) -> None:
    uuid = fx.engine.run(fx.engine.new_workflow("good", queue="other")).uuid
    fx.store.claim("other", "someone", 30.0)        # the oldest: fx's pending one
    fx.store.claim("other", "someone", 30.0)        # ours, running now
    assert ok_json("cancel", uuid, "--db", str(fx.db))["changed"] == 1
    result = ctl("cancel", uuid, "--db", str(fx.db))
    assert (result.exit_code, result.stdout) == (
        0, f"workflow {uuid} is already cancelling: it stops before its next step "
           "(nothing changed)\n")
    data = ok_json("cancel", uuid, "--db", str(fx.db))
    assert data.items() >= {"changed": 0, "uuid": uuid, "status": "running",
                            "cancel_requested": True}.items()
    result = ctl("cancel", "--queue", "other", "--status", "running", "--yes", "--db",
                 str(fx.db))
    assert result.stdout == ("cancelling 1 workflow: running, each stops before its next step; "
                             "1 workflow already cancelled or cancelling (nothing changed)\n")
    pending = fx.engine.run(fx.engine.new_workflow("good", queue="default")).uuid
    assert ok_json("cancel", pending, "--db", str(fx.db))["changed"] == 1
    again = ctl("cancel", pending, "--db", str(fx.db))
    assert again.exit_code == 0 and "already cancelled (nothing changed)" in again.stdout
    done = ctl("cancel", fx.uuids["completed"], "--db", str(fx.db))
    assert done.exit_code == 1 and "already completed: nothing to cancel" in done.stderr


# -- item 13: one timestamp format in show ------------------------------------------------------
def test_show_prints_one_timestamp_format_marked_utc(fx: Fixture) -> None:
    text = ctl("show", fx.uuids["failed"], "--db", str(fx.db)).stdout
    stamps = re.findall(r"\d{4}-\d\d-\d\d[ T][\d:.]+Z?(?: UTC)?", text)
    assert len(stamps) == 4             # created, updated, two attempts
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC", s) for s in stamps)


def test_tail_marks_its_timestamps_utc_the_same_way(tmp_path: Path) -> None:
    log = tmp_path / "ewfd.log"
    log.write_text(json.dumps({"timestamp": "2025-01-02T03:04:05.678901Z", "level": "info",
                               "event": "step.started", "pid": 7}) + "\n")
    result = ctl("tail", "--file", str(log), "--db", str(tmp_path / "unused.db"))
    assert result.stdout.startswith("2025-01-02 03:04:05.678 UTC  info ")


# -- item 7: options before the subcommand; the config where systemd has it ----------------------
def test_global_options_before_or_after_the_subcommand(fx: Fixture) -> None:
    for args in (["--db", str(fx.db), "--json", "workflows"],
                 ["--json", "workflows", "--db", str(fx.db)],
                 ["--db", str(fx.db), "workflows", "--json"]):
        result = ctl(*args)
        assert result.exit_code == 0, (args, result.output)
        assert len(json.loads(result.stdout)) == 3
    # after the subcommand wins
    result = ctl("--db", "/nowhere.db", "show", fx.uuids["failed"][:8], "--db", str(fx.db))
    assert result.exit_code == 0 and fx.uuids["failed"] in result.stdout
    assert ctl("--db", str(fx.db), "--config", "x.toml", "queues").exit_code == 2


def test_ctl_finds_the_system_config(fx: Fixture, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "etc" / "ewfd.toml"
    etc.parent.mkdir()
    etc.write_text(f'[ewfd]\napp = "x:engine"\ndatabase = "{fx.db}"\n')
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("EWFD_CONFIG", raising=False)
    monkeypatch.setattr(config, "SYSTEM_CONFIG", etc)
    assert len(ok_json("workflows")) == 3
    assert config.load_config().path == etc         # ewfd run: the same order
    (elsewhere / "ewfd.toml").write_text('[ewfd]\napp = "x:engine"\ndatabase = "here.db"\n')
    assert config.load_config().database == elsewhere / "here.db"   # ./ewfd.toml first


# -- item 8: names that are not queues; steps that never ran ------------------------------------
def test_queues_shows_closed_and_unknown_names_apart(fx: Fixture) -> None:
    fx.engine.create_queue("old")
    fx.engine.run(fx.engine.new_workflow("good", queue="old"))
    fx.drain("old")
    fx.engine.close_queue("old")
    insert_rows(fx.db, 2, queue="typo")
    assert len(fx.store.reject_unknown_queues()) == 2        # what the supervisor does
    rows = {r["queue"]: r for r in ok_json("queues", "--db", str(fx.db))}
    assert {q: r["kind"] for q, r in rows.items()} == {
        "default": "queue", "other": "queue", "old": "closed", "typo": "unknown"}
    assert (rows["typo"]["workers"], rows["typo"]["paused"], rows["typo"]["failed"]) == (
        None, None, 2)
    assert rows["old"]["completed"] == 1 and rows["default"]["workers"] == 2
    text = ctl("queues", "--db", str(fx.db)).stdout.splitlines()
    gap = text.index("not queues: names left on workflows")
    assert [line.split()[0] for line in text[1:gap - 1]] == ["default", "other"]
    assert text[gap + 1].split()[:2] == ["NAME", "KIND"]
    assert [line.split()[:2] for line in text[gap + 2:]] == [["old", "closed"],
                                                            ["typo", "unknown"]]


def test_a_rejected_row_shows_no_step(fx: Fixture) -> None:
    insert_rows(fx.db, 1, queue="typo")
    (uuid, _), = fx.store.reject_unknown_queues()
    wf = ok_json("show", uuid, "--db", str(fx.db))
    assert wf["started"] is False and wf["history"] == []
    text = ctl("show", uuid, "--db", str(fx.db)).stdout
    assert re.search(r"^step +-$", text, re.M) and "(it never ran a step)" in text
    rows = ctl("workflows", "--status", "failed", "--db", str(fx.db)).stdout.splitlines()
    mine = next(line for line in rows if line.startswith(uuid))
    assert mine.split()[4] == "-"
    theirs = next(line for line in rows if line.startswith(fx.uuids["failed"]))
    assert "flaky (2/2)" in theirs                   # it ran, and failed there


def test_a_full_page_hints_at_status_only_when_no_status_was_given(fx: Fixture) -> None:
    failed(fx, 2)
    narrowed = ctl("workflows", "--status", "failed", "--limit", "1", "--db", str(fx.db))
    assert "use --limit for more" in narrowed.stderr and "--status" not in narrowed.stderr
    wide = ctl("workflows", "--limit", "1", "--db", str(fx.db))
    assert "--status to narrow" in wide.stderr


def test_queues_explains_only_the_kinds_it_lists(fx: Fixture) -> None:
    insert_rows(fx.db, 1, queue="typo")
    store = SQLiteStore(fx.db)
    try:
        assert store.reject_unknown_queues()
    finally:
        store.close()
    result = ctl("queues", "--db", str(fx.db))
    assert "unknown: no queue ever had that name" in result.stderr
    assert "closed:" not in result.stderr, result.stderr
