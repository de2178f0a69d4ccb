"""A bad config stops ``ewfd run`` at once: exit 2, one line naming the file and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Daemon

pytestmark = pytest.mark.e2e

GOOD = '[ewfd]\napp = "e2eapp:engine"\ndatabase = "ewfd.db"\n'

CASES = {
    "unknown key": (GOOD + 'wokers = 2\n', ["ewfd.wokers", "unknown key"]),
    "wrong type": (GOOD + '[queues.default]\nworkers = "two"\n',
                   ["queues.default.workers", "integer", '"two"']),
    "missing file": (None, ["missing.toml", "not found"]),
    "unimportable app": ('[ewfd]\napp = "no_such_module_e2e:engine"\n',
                         ["ewfd.app", "no_such_module_e2e"]),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", sorted(CASES))
def test_config_errors_exit_2_with_one_clear_line(daemon: Daemon, case: str) -> None:
    text, expected = CASES[case]
    path: Path = daemon.dir / ("missing.toml" if text is None else "ewfd.toml")
    if text is not None:
        path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "ewfd", "run", "--config", str(path)],
                            cwd=daemon.dir, env=daemon.env(), capture_output=True, text=True,
                            timeout=25, start_new_session=True)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0], lines[0]
    for word in expected:
        assert word in lines[0], lines[0]
    assert result.stdout == ""
    assert not (daemon.dir / "ewfd.db").exists()   # nothing started
