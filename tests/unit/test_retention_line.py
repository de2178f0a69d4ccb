"""The retention line ``ewfd ctl queues`` prints under its table."""

from __future__ import annotations

import time

from ewfd.cli.ctl import retention_line


def test_unknown_without_a_daemon_or_a_config() -> None:
    assert retention_line(None) == ("retention: unknown (no daemon running; pass --config to "
                                    "read its policy)")


def test_no_policy_keeps_everything() -> None:
    policy = {"completed": None, "failed": None, "cancelled": None, "interval": 60.0,
              "source": "daemon"}
    assert retention_line(policy).startswith("retention: none: finished workflows are kept "
                                             "until `ewfd ctl prune`")


def test_the_daemons_policy_with_its_last_pass() -> None:
    policy = {"completed": 7 * 86400.0, "failed": 30 * 86400.0, "cancelled": None,
              "interval": 60.0, "last_pass_at": time.time() - 12.5,
              "pruned": {"completed": 1200, "failed": 4, "cancelled": 0}, "source": "daemon"}
    assert retention_line(policy) == (
        "retention: completed 7d, failed 30d, cancelled forever (daemon: a pass every 1m, "
        "last 12s ago, 1,204 pruned since it started)")


def test_the_configs_policy_when_the_daemon_is_not_running() -> None:
    policy = {"completed": 3600.0, "failed": None, "cancelled": None, "interval": 60.0,
              "last_pass_at": None, "pruned": None, "source": "config"}
    assert retention_line(policy) == ("retention: completed 1h, failed forever, cancelled "
                                      "forever (config, the daemon is not running: a pass "
                                      "every 1m)")
