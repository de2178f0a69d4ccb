"""The progress publisher is library code too (it runs in an embedding program's process):
what it logs follows ewfd.liblog, quiet on stdout until the program configures logging.
A fresh interpreter, as structlog's configuration is global."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROGRAM = textwrap.dedent("""
    import threading, time
    from ewfd import progress

    done = threading.Event()

    def boom():
        raise RuntimeError("disk full")

    publisher = progress.Publisher()
    publisher.schedule(time.monotonic(), boom)
    publisher.schedule(time.monotonic(), done.set)   # runs after boom's failure is logged
    assert done.wait(30)
""")


@pytest.mark.timeout(60)
def test_a_failed_progress_publish_is_not_printed_to_stdout(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout == ""
    assert "step.progress_failed" in done.stderr and "disk full" in done.stderr
