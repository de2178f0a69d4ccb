"""The app scripts/bench runs: workflow ``bench3``, three trivial steps."""

from __future__ import annotations

from typing import Any

from ewfd import Engine, Step, StepContext, WorkflowTemplate

engine = Engine()


def _step(k: int) -> Any:
    def run(ctx: StepContext, state: dict[str, Any]) -> None:
        state[f"s{k}"] = k

    run.__name__ = f"s{k}"
    return run


for _k in (1, 2, 3):
    engine.register(f"s{_k}", _step(_k))

engine.register_template("bench3", WorkflowTemplate(steps=[Step("s1"), Step("s2"), Step("s3")]))
