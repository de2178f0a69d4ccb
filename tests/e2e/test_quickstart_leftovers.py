"""What the quickstarts leave in a checkout is git-ignored: the daemon's database, its
-wal/-shm files and runtime file, the embedded quickstart's and the http example's
databases. Run for real in a git repository holding the project's .gitignore."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Daemon

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True, timeout=30).stdout


@pytest.mark.timeout(60)
def test_what_the_quickstarts_leave_is_ignored(daemon_factory: Callable[..., Daemon]) -> None:
    d = daemon_factory("run")
    repo = d.dir / "checkout"
    repo.mkdir()
    git(repo, "init", "-q")
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    # the daemon quickstart: `ewfd run` without a config, in the checkout
    d.config_path, d.db, d.log_path = None, repo / "ewfd.db", d.stdout_path
    d.start(args=[], cwd=repo, workers=2)
    uuid = d.insert_job("greet", {"name": "EWF"})
    d.wait_for_status(uuid, "completed")
    assert (repo / "ewfd.db.workers.json").exists()
    snapshot = sorted(p.name for p in repo.iterdir())      # while it runs: -wal, -shm too
    assert d.stop() == 0
    d.start(args=[], cwd=repo, workers=2)                  # and after a crash
    d.remember_descendants()
    assert d.stop(signum=signal.SIGKILL) == -signal.SIGKILL
    assert (repo / "ewfd.db.workers.json").exists()
    # the embedded quickstart and the http example's default database
    subprocess.run([sys.executable, "-c", "from ewfd import Engine, SQLiteStore\n"
                    "Engine(store=SQLiteStore('app.db')).close()\n"
                    "SQLiteStore('http_example.db').close()"], cwd=repo, check=True, timeout=30)
    left = git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert left == ["?? .gitignore"], (left, snapshot)
