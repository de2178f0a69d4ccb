"""The bundled examples run and do what their docstrings say."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ewfd import Engine, SQLiteStore, WorkflowStatus
from ewfd.examples import demo, http_server

DEADLINE = 10.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    engine = http_server.build_engine(SQLiteStore(tmp_path / "http.db"))
    srv = http_server.make_server(engine, 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(DEADLINE)
        engine.close()


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=DEADLINE) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_http_example_greets_in_the_background(server: str) -> None:
    status, body = get(f"{server}/greet/Ada%20L")
    assert status == 202
    uuid = body["workflow_id"]

    end = time.monotonic() + DEADLINE
    while True:
        status, info = get(f"{server}/status/{uuid}")
        assert status == 200
        if info["status"] in ("completed", "failed", "cancelled") or time.monotonic() > end:
            break
        time.sleep(0.02)    # polling interval of a wait with a deadline
    assert info["status"] == "completed", info
    assert info["uuid"] == uuid
    assert info["current_step"] == 2
    assert info["error"] is None
    assert info["state"] == {"name": "Ada L", "greeting": "Hello, Ada L!", "delivered": True}


def test_http_example_unknown_ids_and_paths_are_404(server: str) -> None:
    status, body = get(f"{server}/status/00000000-0000-0000-0000-000000000000")
    assert status == 404 and "no workflow" in body["error"]
    status, body = get(f"{server}/nowhere")
    assert status == 404 and "error" in body


@pytest.mark.timeout(60)
def test_typed_state_example_prints_a_rebuilt_person() -> None:
    result = subprocess.run([sys.executable, "-m", "ewfd.examples.typed_state"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "status: completed",
        "step 2 saw: Person",
        "greeting: Hello, Ada Lovelace of London!",
        "stored as: ewfd.examples.typed_state:Person",
    ]
    assert lines[4].startswith("reloaded: Person with Address: Person(name='Ada Lovelace'")


def test_demo_greet_workflow_completes(tmp_path: Path) -> None:
    # A fresh engine with the demo's registry: the demo's module-level engine stays untouched.
    engine = Engine(store=SQLiteStore(tmp_path / "demo.db"))
    try:
        for name, fn in demo.engine.activities.items():
            engine.register(name, fn)
        for name, template in demo.engine.templates.items():
            engine.register_template(name, template)
        done = engine.run(engine.new_workflow("greet", state={"name": "EWF"}))
        latest = engine.store.load_workflow(done.uuid)
    finally:
        engine.close()
    assert done.status == WorkflowStatus.COMPLETED
    assert [s.name for s in latest.steps] == ["hello", "bye"]
    assert latest.state["greeting"] == "Hello, EWF!"
