"""The demo app: workflow ``greet`` with steps ``hello`` and ``bye``.

``ewfd run`` with no config runs it. Enqueue from any program, e.g.::

    sqlite3 ewfd.db "INSERT INTO jobs (queue, workflow, state)
                     VALUES ('default', 'greet', '{\\"name\\": \\"EWF\\"}')"
"""

from __future__ import annotations

from typing import Any

from ewfd import Engine, RetryPolicy, Step, StepContext, WorkflowTemplate, backoff

engine = Engine()


@engine.activity("hello")
def hello(ctx: StepContext, state: dict[str, Any]) -> None:
    state["greeting"] = f"Hello, {state.get('name', 'world')}!"


@engine.activity("bye")
def bye(ctx: StepContext, state: dict[str, Any]) -> None:
    state["farewell"] = f"Goodbye, {state.get('name', 'world')}."


engine.register_template("greet", WorkflowTemplate(steps=[
    Step("hello", retry=RetryPolicy(max_attempts=3, backoff=backoff.constant(1.0))),
    Step("bye", retry=RetryPolicy(max_attempts=3, backoff=backoff.exponential(0.5, 10.0, 2.0)),
         timeout=30.0),
]))
