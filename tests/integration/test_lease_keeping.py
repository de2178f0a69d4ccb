"""Whatever runs a workflow keeps its lease alive (issue 10, E11).

A step runs far longer than its 2 s lease in one process (an in-process ``Worker``,
``engine.run``, ``run(background=True)``) while a second process does what any other
program may: ``resume_workflows()`` (which takes back expired leases) and a ``Worker``
claiming from the same queue. The step must run once, never twice at the same time.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from waiting import wait_until

from ewfd import Engine, SQLiteStore, WorkflowStatus

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import leaserunner  # noqa: E402

WAIT = 30.0




@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


def spawn(procs: list[subprocess.Popen[bytes]], mode: str, db: Path, where: Path) -> None:
    log = (where / f"{mode}.log").open("wb")
    procs.append(subprocess.Popen([sys.executable, str(HERE / "leaserunner.py"), mode,
                                   str(db), str(where)], stdout=log, stderr=log))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["worker", "run", "background"])
def test_a_step_longer_than_its_lease_never_runs_twice_at_once(
        tmp_path: Path, procs: list[subprocess.Popen[bytes]], mode: str) -> None:
    db = tmp_path / "ewfd.db"
    engine = leaserunner.build(str(db), tmp_path)
    engine.create_queue("q", poll_interval=0.05, lease=leaserunner.LEASE)
    wf = engine.new_workflow("long", queue="q" if mode == "worker" else None)
    engine.store.create_workflow(wf, "{}")
    (tmp_path / "uuid").write_text(wf.uuid)

    spawn(procs, mode, db, tmp_path)
    wait_until((tmp_path / "running").exists, WAIT, "the first runner's step")
    spawn(procs, "rival", db, tmp_path)
    wait_until((tmp_path / "ready-rival").exists, WAIT, "the rival to start")

    def finished() -> bool:
        return engine.store.load_workflow(wf.uuid).status.finished
    wait_until(finished, WAIT, "the workflow to finish")
    (tmp_path / "stop").touch()
    for proc in procs:
        proc.wait(WAIT)

    assert not (tmp_path / "overlap").exists(), "two runners ran the step at the same time"
    assert len((tmp_path / "runs").read_text().split()) == 1
    store = SQLiteStore(db)
    try:
        assert store.load_workflow(wf.uuid).status == WorkflowStatus.COMPLETED
        assert [a.outcome for a in store.history(wf.uuid)] == ["completed"]
    finally:
        store.close()
    engine.close()


def test_the_lease_keeper_follows_the_shortest_lease_held(tmp_path: Path) -> None:
    """One keeper per engine: a Worker's 2 s lease is renewed in time even though the
    engine's own lease is 30 s."""
    engine = Engine(store=SQLiteStore(tmp_path / "ewfd.db"), lease=30.0)
    try:
        with engine.leases_held("me:1:1", 30.0), engine.leases_held("me:1:1", 2.0):
            assert engine._lease_keeper().interval() == pytest.approx(2.0 / 3)
        assert engine._lease_keeper().interval() is None
    finally:
        engine.close()


@pytest.mark.timeout(60)
def test_a_forked_process_and_a_rebound_engine_keep_their_leases(tmp_path: Path) -> None:
    """The daemon imports the app (whose engine may have run something already), forks, and
    binds the engine to its database: the lease thread must run in the child, on the store
    the engine now has."""
    import multiprocessing

    first = tmp_path / "first.db"
    engine = Engine(store=SQLiteStore(first), lease=1.0)
    with engine.leases_held("parent:1:1", 1.0):   # the parent's keeper thread exists
        pass

    def child() -> None:
        store = SQLiteStore(tmp_path / "second.db")
        engine.bind(store, save_templates=False)
        wf = leaserunner.build(str(tmp_path / "second.db"), tmp_path).new_workflow("long")
        store.create_workflow(wf, "{}")
        claimed = store.claim_workflow(wf.uuid, "child:2:2", 1.0)
        assert claimed is not None
        with engine.leases_held("child:2:2", 1.0):
            time.sleep(2.5)   # more than two leases: only renewals keep it
            assert store.interrupt(expired=True, reason="lease expired") == []

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(WAIT)
    assert proc.exitcode == 0
    engine.close()
