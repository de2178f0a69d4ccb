"""An embedded ewfd is quiet until the program configures logging, as a library should:
the README's embedded quickstart prints exactly what the README says it prints, a program
that configures the standard ``logging`` module gets ewfd's events there, and one that
configures structlog gets them through structlog. Each program runs in a fresh interpreter
(structlog's configuration is global)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

WORKFLOW = """
from ewfd import Engine, SQLiteStore, Step, WorkflowTemplate

engine = Engine(store=SQLiteStore("app.db"))

@engine.activity("hello")
def hello(ctx, state):
    if state.get("fail"):
        raise RuntimeError("card declined")
    state["greeting"] = "hi"

engine.register_template("greet", WorkflowTemplate(steps=[Step("hello")]))
"""


def run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=True)


def readme_quickstart() -> tuple[str, str]:
    """The README's embedded quickstart and the output it promises (its print's comment)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Quickstart: embedded"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    promised = re.search(r"^print\(.*?#\s*(.+)$", code.group(1), re.M)
    assert promised is not None
    return code.group(1), promised.group(1).strip()


@pytest.mark.timeout(60)
def test_the_readme_embedded_quickstart_prints_what_the_readme_says(tmp_path: Path) -> None:
    code, promised = readme_quickstart()
    done = run(code, tmp_path)
    assert done.stdout == promised + "\n"
    assert done.stderr == ""


@pytest.mark.timeout(60)
def test_nothing_but_warnings_without_a_logging_setup(tmp_path: Path) -> None:
    done = run(WORKFLOW + textwrap.dedent("""
        engine.run(engine.new_workflow("greet"))
        try:
            engine.run(engine.new_workflow("greet", state={"fail": True}))
        except Exception:
            pass
        engine.close()
        """), tmp_path)
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        line for line in done.stderr.splitlines() if line.split()[0] in (
            "step.failed", "workflow.failed")]
    assert 'error="card declined"' in done.stderr and "step.started" not in done.stderr


@pytest.mark.timeout(60)
def test_a_program_that_configures_logging_gets_the_events(tmp_path: Path) -> None:
    done = run(textwrap.dedent("""
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                            format="%(name)s %(levelname)s %(message)s")
        """) + WORKFLOW + 'engine.run(engine.new_workflow("greet"))\nengine.close()\n',
        tmp_path)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ewfd INFO workflow.started ")
    assert any(line.startswith("ewfd INFO step.completed ") and "step=hello" in line
               for line in lines)
    assert done.stderr == ""


@pytest.mark.timeout(60)
def test_a_program_that_configures_structlog_gets_the_events_through_it(tmp_path: Path) -> None:
    done = run(WORKFLOW + textwrap.dedent("""
        import structlog
        seen = []
        structlog.configure(processors=[lambda _, method, event: seen.append(
            (method, event["event"])) or ""],
            logger_factory=structlog.ReturnLoggerFactory())
        engine.run(engine.new_workflow("greet"))
        engine.close()
        print(seen)
        """), tmp_path)
    assert "('info', 'workflow.completed')" in done.stdout
    assert done.stdout.count("\n") == 1 and done.stderr == ""
