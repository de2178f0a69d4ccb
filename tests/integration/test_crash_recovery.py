"""kill -9 in the middle of a step: a new engine on the same file resumes where it stopped.

A child process runs a three-step workflow on a SQLite file. Step two writes a
marker file and blocks; the test kills the child with SIGKILL, then resumes
with a fresh engine in this process. Every step appends a line to a
side-effect file, so the test can count what ran where.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from ewfd import Engine, SQLiteStore, Step, StepContext, WorkflowStatus, WorkflowTemplate

DEADLINE = 20.0

# The child: the same workflow as the test's, except that step two blocks forever.
CHILD = textwrap.dedent("""
    import sys, time
    from ewfd import Engine, SQLiteStore, Step, WorkflowTemplate

    db, effects, marker, uuid = sys.argv[1:5]

    def record(ctx, line):
        with open(effects, "a") as f:
            f.write(f"{line} {ctx.idempotency_key} pid={__import__('os').getpid()}\\n")

    def one(ctx, state):
        record(ctx, "one")
        state["one"] = True

    def two(ctx, state):
        record(ctx, "two")
        open(marker, "w").close()
        time.sleep(600)           # killed here

    def three(ctx, state):
        record(ctx, "three")

    engine = Engine(store=SQLiteStore(db))
    for name, fn in (("one", one), ("two", two), ("three", three)):
        engine.register(name, fn)
    engine.register_template("crashy", WorkflowTemplate(steps=[Step("one"), Step("two"),
                                                               Step("three")]))
    engine.run(engine.new_workflow("crashy", uuid=uuid, state={"started": True}))
""")

UUID = "6f1c9a52-2a47-4f3a-9d1e-0c9e7b5d0a11"


def _wait_for(path: Path, proc: subprocess.Popen[bytes], deadline: float) -> None:
    end = time.monotonic() + deadline
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited with {proc.returncode} before the marker")
        if time.monotonic() > end:
            raise AssertionError(f"no marker {path} after {deadline}s")
        time.sleep(0.01)   # polling interval of a wait with a deadline


def _resuming_engine(db: Path, effects: Path, seen: list[dict[str, Any]]) -> Engine:
    def record(ctx: StepContext, line: str) -> None:
        with effects.open("a") as f:
            f.write(f"{line} {ctx.idempotency_key} pid={os.getpid()}\n")

    def one(ctx: StepContext, state: dict[str, Any]) -> None:
        record(ctx, "one")

    def two(ctx: StepContext, state: dict[str, Any]) -> None:
        seen.append(dict(state))
        record(ctx, "two")
        state["two"] = True

    def three(ctx: StepContext, state: dict[str, Any]) -> None:
        record(ctx, "three")
        state["three"] = True

    engine = Engine(store=SQLiteStore(db))
    for name, fn in (("one", one), ("two", two), ("three", three)):
        engine.register(name, fn)
    engine.register_template("crashy", WorkflowTemplate(steps=[Step("one"), Step("two"),
                                                               Step("three")]))
    return engine


@pytest.mark.timeout(60)
def test_sigkill_during_a_step_resumes_at_that_step(tmp_path: Path) -> None:
    db, effects, marker = tmp_path / "crash.db", tmp_path / "effects.txt", tmp_path / "in-two"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    with (tmp_path / "child.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, str(script), str(db), str(effects), str(marker),
                                 UUID], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(marker, proc, DEADLINE)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=DEADLINE) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    seen: list[dict[str, Any]] = []
    engine = _resuming_engine(db, effects, seen)
    try:
        assert engine.store.load_workflow(UUID).status == WorkflowStatus.RUNNING
        futures = engine.resume_workflows()
        assert len(futures) == 1
        done = futures[0].result(timeout=DEADLINE)
        history = engine.store.history(UUID)
        latest = engine.store.load_workflow(UUID)
    finally:
        engine.close()

    assert done.status == WorkflowStatus.COMPLETED
    assert latest.status == WorkflowStatus.COMPLETED and latest.current_step == 3
    assert latest.state == {"started": True, "one": True, "two": True, "three": True}
    assert seen == [{"started": True, "one": True}]   # step two resumed from the saved state

    lines = [line.split() for line in effects.read_text().splitlines()]
    child, me = f"pid={proc.pid}", f"pid={os.getpid()}"
    assert [(step, pid) for step, _, pid in lines] == [
        ("one", child), ("two", child), ("two", me), ("three", me)]
    # the retried step sees the same idempotency key as the attempt that was killed
    assert lines[1][1] == lines[2][1] == f"{UUID}:two"

    assert [(a.step, a.outcome) for a in history] == [
        ("one", "completed"), ("two", "interrupted"), ("two", "completed"),
        ("three", "completed")]
    assert history[1].worker_pid == proc.pid
