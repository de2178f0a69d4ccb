"""A process that runs workflows the way an embedding program does, for the lease tests.

``python leaserunner.py MODE DB DIR``. The step ``long`` holds ``DIR/running`` (created
with O_EXCL: a second runner at the same time records ``DIR/overlap``) for
``STEP_SECONDS``, far past the 2 s lease, and appends a line to ``DIR/runs``.

MODE ``worker``: an in-process Worker on queue ``q`` until ``DIR/stop`` exists.
MODE ``run`` / ``background``: ``engine.run`` of the queue-less workflow ``DIR/uuid`` names.
MODE ``rival``: what a second program does: ``resume_workflows()`` and a Worker's
``run_once()`` on queue ``q``, over and over, until ``DIR/stop`` exists.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from ewfd import Engine, SQLiteStore, Step, StepContext, WorkflowTemplate
from ewfd.worker import Worker

LEASE = 2.0
STEP_SECONDS = 5.0


def build(db: str, where: Path) -> Engine:
    engine = Engine(store=SQLiteStore(db), lease=LEASE)

    def long(ctx: StepContext, state: dict[str, Any]) -> None:
        try:
            fd = os.open(where / "running", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            (where / "overlap").write_text(f"{os.getpid()}\n")
            raise
        os.close(fd)
        with (where / "runs").open("a") as out:
            out.write(f"{os.getpid()}\n")
        try:
            time.sleep(STEP_SECONDS)
        finally:
            os.unlink(where / "running")

    engine.register("long", long)
    engine.register_template("long", WorkflowTemplate(steps=[Step("long")]))
    return engine


def main(mode: str, db: str, directory: str) -> None:
    where = Path(directory)
    engine = build(db, where)
    spec = engine.create_queue("q", poll_interval=0.05, lease=LEASE)
    worker = Worker(engine, engine.store, spec)
    (where / f"ready-{mode}").touch()
    if mode in ("run", "background"):
        wf = engine.store.load_workflow((where / "uuid").read_text())
        if mode == "run":
            engine.run(wf)
        else:
            engine.run(wf, background=True).result()
    while mode in ("worker", "rival") and not (where / "stop").exists():
        if mode == "rival":
            engine.resume_workflows()
        if worker.run_once() is None:
            time.sleep(0.05)
    engine.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
