"""``python -m ewfd.examples.http_server --help`` explains every option and its default, and
the server says where it listens through the program's logging set-up."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.timeout(60)
def test_help_explains_options_and_defaults() -> None:
    done = subprocess.run([sys.executable, "-m", "ewfd.examples.http_server", "--help"],
                          capture_output=True, text=True, timeout=60, check=True)
    text = " ".join(done.stdout.split())
    assert text.startswith("usage: python -m ewfd.examples.http_server ")
    for option, default in (("--port", "8090"), ("--host", "127.0.0.1"),
                            ("--db", "http_example.db"), ("--log-level", "info")):
        start = text.index(option, text.index("options:"))
        described = text[start:text.find(" --", start + len(option) + 1)]
        assert f"(default: {default})" in described, described
        assert len(described.split()) > 6, f"{option} is not explained: {described}"
    assert "GET /greet/NAME" in text and "GET /status/ID" in text
