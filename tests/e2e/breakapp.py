"""Steps for the breaker tests (``app = "breakapp:engine"``): e2eapp's engine plus these.

``forker``    fork_and_exit: forks a helper that ends with ``sys.exit(0)`` (pid appended to
              ``forked.txt``), then the step returns.
``deaf``      ignore_term: sets SIGTERM to SIG_IGN (as some libraries do), then blocks like
              e2eapp's ``block`` until released.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from e2eapp import _dir, block, engine, record

from ewfd import Step, StepContext, WorkflowTemplate


def fork_and_exit(ctx: StepContext, state: dict[str, Any]) -> None:
    record(ctx)
    pid = os.fork()
    if pid == 0:
        sys.exit(0)   # the usual ending of a forked helper
    with (_dir() / "forked.txt").open("a") as out:
        out.write(f"{pid}\n")


def ignore_term(ctx: StepContext, state: dict[str, Any]) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    block(ctx, state)


engine.register("fork_and_exit", fork_and_exit)
engine.register("ignore_term", ignore_term)
engine.register_template("forker", WorkflowTemplate(steps=[Step("fork_and_exit"), Step("one")]))
engine.register_template("deaf", WorkflowTemplate(steps=[Step("ignore_term")]))
