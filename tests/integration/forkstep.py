"""A program whose step forks, for the breaker tests: the forked process is not the attempt.

``python forkstep.py STORE HOW DIR``: STORE ``sqlite`` or ``memory``; HOW is what the forked
child does in the step: ``exit`` (``sys.exit(0)``, the usual ending of a forked helper),
``raise`` (an exception) or ``return`` (falls through back into ewfd). The parent writes the
child's pid to ``DIR/child``; the second step appends its pid to ``DIR/second``; whoever comes
back out of ``engine.run`` appends its pid to ``DIR/after``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ewfd import Engine, MemoryStore, SQLiteStore, Step, StepContext, WorkflowTemplate


def main(kind: str, how: str, where: Path) -> None:
    store = SQLiteStore(where / "ewfd.db") if kind == "sqlite" else MemoryStore()
    engine = Engine(store=store)

    def forks(ctx: StepContext, state: dict[str, Any]) -> None:
        pid = os.fork()
        if pid == 0:
            if how == "exit":
                sys.exit(0)
            if how == "raise":
                raise ValueError("raised in the forked child")
            return
        (where / "child").write_text(str(pid))

    def second(ctx: StepContext, state: dict[str, Any]) -> None:
        with (where / "second").open("a") as out:
            out.write(f"{os.getpid()}\n")

    engine.register("forks", forks)
    engine.register("second", second)
    engine.register_template("t", WorkflowTemplate(steps=[Step("forks"), Step("second")]))
    wf = engine.new_workflow("t")
    try:
        engine.run(wf)
    finally:
        with (where / "after").open("a") as out:
            out.write(f"{os.getpid()}\n")
    (where / "status").write_text(str(engine.store.load_workflow(wf.uuid).status))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
