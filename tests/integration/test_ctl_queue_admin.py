"""``ewfd ctl create-queue`` / ``close-queue`` in process against a real SQLite file: the
refusals for a queue the config defines, and ``close-queue --drain`` / ``--cancel-pending``
as the database sees them (the daemon's part is in tests/e2e/test_queue_ops.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ewfd import Engine, QueueSpec, SQLiteStore, Step, WorkflowStatus, WorkflowTemplate
from ewfd.cli import main
from ewfd.config import BUILT_IN


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    store = SQLiteStore(tmp_path / "ewfd.db")
    engine = Engine(store)
    engine.register("a", lambda ctx, state: None)
    engine.register_template("t", WorkflowTemplate(steps=[Step("a")]))
    engine.save_templates()
    store.save_queue(QueueSpec("orders", workers=2, origin="config",
                               defined_in="/etc/ewfd/ewfd.toml"))
    store.save_queue(QueueSpec("batch", origin="ctl"))
    for _ in range(2):
        engine.run(engine.new_workflow("t", queue="batch"))
    store.close()
    yield tmp_path / "ewfd.db"


def ctl(*args: str) -> Result:
    return CliRunner().invoke(main, ["ctl", *args], catch_exceptions=False)


def test_a_configured_queue_is_refused_by_create_and_close(db: Path) -> None:
    for args in (["create-queue", "orders", "--workers", "3"], ["close-queue", "orders"],
                 ["close-queue", "orders", "--drain"]):
        result = ctl(*args, "--db", str(db))
        assert result.exit_code == 1, result.output
        assert "queue orders is defined in /etc/ewfd/ewfd.toml" in result.stderr
        assert "SIGHUP" in result.stderr
    assert SQLiteStore(db, readonly=True).load_queue("orders").workers == 2


def test_the_demo_set_ups_queue_is_refused_with_advice_that_works(db: Path) -> None:
    """ewfd run without a config file: there is no file to edit, so say how to get one."""
    store = SQLiteStore(db)
    store.save_queue(QueueSpec("default", origin="config", defined_in=BUILT_IN))
    store.close()
    for args in (["create-queue", "default", "--workers", "3"], ["close-queue", "default"]):
        result = ctl(*args, "--db", str(db))
        assert result.exit_code == 1, result.output
        assert "ewfd run found no config file" in result.stderr
        assert "ewfd init" in result.stderr and "SIGHUP" not in result.stderr
    queues = ctl("queues", "--db", str(db))
    assert f"config: {BUILT_IN} (default): to change them, write a config file" in (
        queues.stderr)
    assert "(default): change them there" not in queues.stderr


def test_a_queue_the_local_config_defines_is_refused_before_the_daemon_stored_it(
        db: Path) -> None:
    config = db.parent / "ewfd.toml"
    config.write_text(f'[ewfd]\napp = "x:engine"\ndatabase = "{db}"\n\n[queues.fresh]\n')
    result = ctl("create-queue", "fresh", "--config", str(config))
    assert result.exit_code == 1
    assert f"queue fresh is defined in {config}" in result.stderr


def test_close_with_work_is_refused_with_advice_that_works(db: Path) -> None:
    result = ctl("close-queue", "batch", "--db", str(db))
    assert result.exit_code == 1
    assert "ewfd ctl close-queue batch --drain" in result.stderr
    assert "pause" not in result.stderr


def test_drain_marks_the_queue_and_counts_its_work(db: Path) -> None:
    result = ctl("close-queue", "batch", "--drain", "--json", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"changed": 1, "queue": "batch", "closed": False,
                                         "draining": True, "pending": 2, "running": 0,
                                         "cancelled": 0, "resumed": False}
    rows = json.loads(ctl("queues", "--json", "--db", str(db)).stdout)
    batch = next(r for r in rows if r["queue"] == "batch")
    assert (batch["draining"], batch["origin"], batch["defined_in"]) == (True, "ctl", None)
    orders = next(r for r in rows if r["queue"] == "orders")
    assert (orders["origin"], orders["defined_in"]) == ("config", "/etc/ewfd/ewfd.toml")
    refused = ctl("enqueue", "t", "--queue", "batch", "--db", str(db))
    assert refused.exit_code == 1 and "is closing" in refused.stderr
    again = ctl("create-queue", "batch", "--db", str(db))        # changed one's mind
    assert again.exit_code == 0 and "it was draining, it is open again" in again.stdout
    assert not SQLiteStore(db, readonly=True).load_queue("batch").draining


def test_cancel_pending_leaves_nothing_and_closes_at_once(db: Path) -> None:
    result = ctl("close-queue", "batch", "--cancel-pending", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert result.stdout == "cancelled 2 pending workflows; closed queue batch\n"
    store = SQLiteStore(db, readonly=True)
    assert [q.name for q in store.load_queues()] == ["orders"]
    assert {w.status for w in store.list_workflows(queue="batch")} == {
        WorkflowStatus.CANCELLED}


def test_force_and_drain_together_are_bad_usage(db: Path) -> None:
    assert ctl("close-queue", "batch", "--force", "--drain", "--db", str(db)).exit_code == 2


def test_a_queue_removed_from_its_config_is_nobodys(db: Path) -> None:
    """A reload drains a queue removed from the config: ctl may then take it over."""
    store = SQLiteStore(db)
    store.set_draining("orders", True)
    store.close()
    result = ctl("create-queue", "orders", "--workers", "1", "--db", str(db))
    assert result.exit_code == 0, result.output
    spec = SQLiteStore(db, readonly=True).load_queue("orders")
    assert (spec.origin, spec.defined_in, spec.draining, spec.workers) == ("ctl", None, False, 1)
