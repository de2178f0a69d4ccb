"""Text that is not valid UTF-8, and state type tags, through ``engine.run``, ``resume_workflows``
and the in-process :class:`Worker` on real SQLite files (issue 10, items C6 and G17).

The rule (``ewfd/codec.py``): state and metadata come back exactly, whatever their strings
hold; names and labels stored as plain text are refused up front; error texts are escaped;
a type tag only ever names a class registered with ``@ewfd.state_type``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ewfd import (
    Engine,
    MemoryStore,
    QueueSpec,
    RetryPolicy,
    SQLiteStore,
    StateError,
    Step,
    StepContext,
    WorkflowFailed,
    WorkflowStatus,
    WorkflowTemplate,
    backoff,
)
from ewfd.worker import Worker

ODD = {"caf\udcff": ["x\ud83d", "caf\udcff.txt"], "name": "caf\ud83d"}   # keys and values


@pytest.fixture(params=["sqlite", "memory"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    store = SQLiteStore(tmp_path / "ewfd.db") if request.param == "sqlite" else MemoryStore()
    eng = Engine(store)
    yield eng
    eng.close()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(SQLiteStore(tmp_path / "ewfd.db"))
    yield eng
    eng.close()


def one_step(engine: Engine, name: str, fn: Any, **step: Any) -> None:
    engine.register(name, fn)
    engine.register_template(name, WorkflowTemplate(steps=[Step(name, **step)]))


def insert(db: Path, workflow: str, state: str, queue: str | None = None) -> str:
    """Enqueue with plain SQL, as an outside program would; returns the uuid."""
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        cur = conn.execute("INSERT INTO jobs (queue, workflow, state) VALUES (?, ?, ?)",
                           (queue, workflow, state))
        return str(conn.execute("SELECT uuid FROM jobs WHERE id = ?",
                                (cur.lastrowid,)).fetchone()[0])


# -- C6: state and metadata come back exactly ---------------------------------------------------
def test_state_and_metadata_with_lone_surrogates_round_trip(engine: Engine) -> None:
    calls: list[dict[str, Any]] = []

    def step(ctx: StepContext, state: dict[str, Any]) -> None:
        calls.append(dict(state))
        state["seen"] = ctx.metadata["who"]
        state["listed"] = ["caf\udcff.txt"]     # what os.listdir gives for a non-UTF-8 name

    one_step(engine, "odd", step)
    wf = engine.new_workflow("odd", state=dict(ODD), metadata={"who": "x\udcff"})
    done = engine.run(wf)

    assert done.status == WorkflowStatus.COMPLETED
    assert calls == [ODD]
    loaded = engine.store.load_workflow(wf.uuid)
    assert loaded.state == {**ODD, "seen": "x\udcff", "listed": ["caf\udcff.txt"]}
    assert loaded.metadata == {"who": "x\udcff"}


def test_ordinary_text_is_stored_as_it_is(tmp_path: Path, sqlite_engine: Engine) -> None:
    one_step(sqlite_engine, "plain", lambda ctx, state: None)
    wf = sqlite_engine.run(sqlite_engine.new_workflow("plain", state={"name": "café 東京"}))
    with contextlib.closing(sqlite3.connect(tmp_path / "ewfd.db")) as conn:
        raw = conn.execute("SELECT state FROM jobs WHERE uuid = ?", (wf.uuid,)).fetchone()[0]
    assert raw == '{"name":"café 東京"}'     # only lone surrogates are written as escapes


def test_a_sql_row_holding_a_lone_surrogate_runs_in_the_in_process_worker(
        tmp_path: Path, sqlite_engine: Engine) -> None:
    one_step(sqlite_engine, "greet", lambda ctx, state: state.update(g="Hi " + state["name"]))
    sqlite_engine.create_queue("default")
    uuid = insert(tmp_path / "ewfd.db", "greet", '{"name": "caf\\ud83d"}', "default")

    [outcome] = Worker(sqlite_engine, sqlite_engine.store, QueueSpec("default")).drain()

    assert outcome.workflow.status == WorkflowStatus.COMPLETED
    assert sqlite_engine.store.load_workflow(uuid).state == {"name": "caf\ud83d",
                                                             "g": "Hi caf\ud83d"}


def test_a_sql_row_naming_a_step_that_is_not_text_is_rejected(tmp_path: Path,
                                                              sqlite_engine: Engine) -> None:
    one_step(sqlite_engine, "ok", lambda ctx, state: None)
    sqlite_engine.create_queue("default")
    uuid = insert(tmp_path / "ewfd.db", "ok", "{}", "default")
    with contextlib.closing(sqlite3.connect(tmp_path / "ewfd.db")) as conn, conn:
        conn.execute("UPDATE jobs SET steps = ? WHERE uuid = ?",
                     ('[{"name": "ok\\udcff", "retry": null, "timeout": null}]', uuid))

    [outcome] = Worker(sqlite_engine, sqlite_engine.store, QueueSpec("default")).drain()

    assert outcome.rejected
    error = sqlite_engine.store.load_workflow(uuid).error or ""
    assert "steps" in error and "not valid UTF-8" in error


# -- C6: error texts are escaped, never fatal -----------------------------------------------------
def test_an_error_text_with_a_lone_surrogate_is_an_ordinary_failure(engine: Engine) -> None:
    calls: list[int] = []

    def step(ctx: StepContext, state: dict[str, Any]) -> None:
        calls.append(ctx.attempt)
        raise RuntimeError("cannot read caf\udcff.txt")

    def hook(wf: Any, step: Any, exc: BaseException | None) -> None:
        raise ValueError("hook saw caf\udcff")

    engine.register("read", step)
    engine.register_template("read", WorkflowTemplate(
        steps=[Step("read", retry=RetryPolicy(2, backoff.zero()))], after_step=[hook]))
    with pytest.raises(WorkflowFailed) as caught:
        engine.run(engine.new_workflow("read"))

    assert calls == [1, 2]
    text = "cannot read caf\\udcff.txt"
    assert caught.value.workflow.error == f"step read: {text}"
    uuid = caught.value.workflow.uuid
    assert engine.store.load_workflow(uuid).error == f"step read: {text}"
    assert [(a.outcome, a.error) for a in engine.store.history(uuid)] == [("failed", text)] * 2


# -- C6: names and labels are refused up front ----------------------------------------------------
def test_labels_that_are_not_valid_text_are_refused_up_front(engine: Engine) -> None:
    one_step(engine, "ok", lambda ctx, state: None)
    for kwargs, what in (({"display_name": "Q3 \udcff"}, "display_name"),
                         ({"queue": "q\udcff"}, "queue")):
        with pytest.raises(ValueError, match=what):
            engine.new_workflow("ok", **kwargs)
    wf = engine.new_workflow("ok")
    wf.display_name = "changed \ud83d"           # set after new_workflow: run refuses it
    with pytest.raises(ValueError, match="display_name"):
        engine.run(wf)
    assert engine.store.list_workflows() == []
    with pytest.raises(ValueError, match="queue"):
        engine.create_queue("q\udcff")
    with pytest.raises(ValueError, match="template"):
        engine.register_template("t\udcff", WorkflowTemplate(steps=[Step("ok")]))
    with pytest.raises(ValueError, match="step"):
        Step("s\udcff")
    with pytest.raises(ValueError, match="activity"):
        engine.register("a\udcff", lambda ctx, state: None)


# -- G17: a type tag never imports a module -------------------------------------------------------
SIDE_EFFECT = '''\
import os
from dataclasses import dataclass

with open(os.path.join({where!r}, "imported-" + __name__), "w") as fh:
    fh.write("imported")

@dataclass
class Thing:
    value: int = 0
'''


@pytest.fixture
def side_effect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An importable module ``sidefx_run`` whose import leaves a marker file; yields the marker."""
    where = tmp_path / "modules"
    where.mkdir()
    (where / "sidefx_run.py").write_text(SIDE_EFFECT.format(where=str(where)))
    monkeypatch.syspath_prepend(str(where))
    yield where / "imported-sidefx_run"
    sys.modules.pop("sidefx_run", None)


TAGGED = {"__ewfd_type__": "sidefx_run:Thing", "value": 1}


def test_engine_run_refuses_a_tag_in_the_state_and_imports_nothing(
        engine: Engine, side_effect: Path) -> None:
    one_step(engine, "ok", lambda ctx, state: None)
    with pytest.raises(StateError, match="sidefx_run:Thing") as caught:
        engine.run(engine.new_workflow("ok", state={"thing": TAGGED}))
    assert "'thing'" in str(caught.value) and "state_type" in str(caught.value)
    assert not side_effect.exists() and "sidefx_run" not in sys.modules


def test_a_step_leaving_a_tag_fails_its_attempt_and_imports_nothing(
        engine: Engine, side_effect: Path) -> None:
    calls: list[int] = []

    def forge(ctx: StepContext, state: dict[str, Any]) -> None:
        calls.append(ctx.attempt)
        state["thing"] = dict(TAGGED)

    one_step(engine, "forge", forge)
    with pytest.raises(WorkflowFailed, match="sidefx_run:Thing") as caught:
        engine.run(engine.new_workflow("forge"))
    assert "state['thing']" in (caught.value.workflow.error or "")
    assert calls == [1]
    assert not side_effect.exists() and "sidefx_run" not in sys.modules


def test_a_tag_in_a_sql_row_fails_the_job_and_imports_nothing(
        tmp_path: Path, sqlite_engine: Engine, side_effect: Path) -> None:
    ran: list[str] = []
    one_step(sqlite_engine, "ok", lambda ctx, state: ran.append(ctx.workflow_uuid))
    sqlite_engine.create_queue("default")
    state = '{"thing": {"__ewfd_type__": "sidefx_run:Thing", "value": 1}}'
    resumed = insert(tmp_path / "ewfd.db", "ok", state)             # no queue: resume runs it
    queued = insert(tmp_path / "ewfd.db", "ok", state, "default")   # a worker runs it

    [future] = sqlite_engine.resume_workflows()
    with pytest.raises(WorkflowFailed, match="sidefx_run:Thing"):
        future.result(timeout=30)
    [outcome] = Worker(sqlite_engine, sqlite_engine.store, QueueSpec("default")).drain()
    assert outcome.rejected

    for uuid in (resumed, queued):
        wf = sqlite_engine.store.load_workflow(uuid, typed=False)
        assert wf.status == WorkflowStatus.FAILED
        assert "sidefx_run:Thing" in (wf.error or "") and "state_type" in (wf.error or "")
        sqlite_engine.store.load_workflow(uuid)      # a typed read imports nothing either
    assert ran == []
    assert not side_effect.exists() and "sidefx_run" not in sys.modules
