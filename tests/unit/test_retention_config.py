"""The ``[retention]`` table of the config: how long finished workflows are kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from ewfd.config import Config, ConfigError, RetentionConfig, load_config

REPO = Path(__file__).resolve().parents[2]
MINIMAL = '[ewfd]\napp = "myapp.workflows:engine"\n'


def load(tmp_path: Path, retention: str) -> Config:
    path = tmp_path / "ewfd.toml"
    path.write_text(MINIMAL + retention, encoding="utf-8")
    return load_config(path, env={}, cwd=tmp_path)


def error(tmp_path: Path, retention: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, retention)
    assert info.value.exit_code == 2
    return str(info.value)


def test_without_a_retention_table_everything_is_kept(tmp_path: Path) -> None:
    retention = load(tmp_path, "").retention
    assert retention == RetentionConfig() == Config().retention
    assert (retention.completed, retention.failed, retention.cancelled) == (None, None, None)
    assert not retention.enabled and retention.interval == 60.0


def test_each_status_takes_a_duration(tmp_path: Path) -> None:
    retention = load(tmp_path, '[retention]\ncompleted = "7d"\nfailed = "30d"\n'
                               'cancelled = 3600\ninterval = "10s"\n').retention
    assert (retention.completed, retention.failed, retention.cancelled) == (
        7 * 86400.0, 30 * 86400.0, 3600.0)
    assert retention.interval == 10.0 and retention.enabled
    assert retention.keep("completed") == 7 * 86400.0
    assert load(tmp_path, '[retention]\nfailed = "1s"\n').retention.keep("completed") is None


@pytest.mark.parametrize(("text", "problem"), [
    ('completed = "0"', 'retention.completed: expected a duration >= 1s, got "0" (remove the '
                        "key to keep completed workflows forever)"),
    ('failed = "500ms"', 'retention.failed: expected a duration >= 1s, got "500ms"'),
    ('cancelled = "7x"', 'retention.cancelled: expected a duration like "250ms", "30s" or '
                         '"5m", got "7x"'),
    ('completed = "7"', 'did you mean "7s"?'),
    ("completed = true", "retention.completed: expected a duration"),
    ('completed = "400d"', "retention.completed: duration \"400d\" is too large (at most 366d)"),
    ('interval = "0"', 'retention.interval: expected a duration between 1s and 1d, got "0"'),
    ('interval = "2d"', 'retention.interval: expected a duration between 1s and 1d'),
    ('complete = "7d"', 'retention.complete: unknown key (did you mean "completed"?)'),
    ('pending = "7d"', "retention.pending: unknown key (only finished workflows are pruned: "
                       '"completed", "failed", "cancelled")'),
])
def test_bad_values_name_the_key_and_the_problem(tmp_path: Path, text: str,
                                                 problem: str) -> None:
    message = error(tmp_path, f"[retention]\n{text}\n")
    assert message.startswith(f"config: {tmp_path / 'ewfd.toml'}: ")
    assert problem in message


def test_retention_must_be_a_table_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "ewfd.toml"
    path.write_text('retention = "7d"\n' + MINIMAL, encoding="utf-8")
    with pytest.raises(ConfigError, match='retention: expected a table, got "7d"'):
        load_config(path, env={}, cwd=tmp_path)
    assert 'ewfd.retention: unknown key (a table of its own: [retention])' in error(
        tmp_path, 'retention = "7d"\n')


def test_a_status_outside_the_table_says_where_it_belongs(tmp_path: Path) -> None:
    path = tmp_path / "ewfd.toml"
    path.write_text('completed = "7d"\n' + MINIMAL, encoding="utf-8")
    with pytest.raises(ConfigError, match=r'put "completed" under a \[retention\] table'):
        load_config(path, env={}, cwd=tmp_path)


def test_the_sample_config_documents_the_retention_defaults() -> None:
    sample = load_config(REPO / "etc" / "ewfd.toml", env={}, cwd=Path("/"))
    assert sample.retention == Config().retention
    text = (REPO / "etc" / "ewfd.toml").read_text()
    for line in ("[retention]", '# completed = "7d"', '# failed = "30d"', '# cancelled = "7d"',
                 'interval = "1m"'):
        assert line in text
