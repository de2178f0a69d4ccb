"""ewfd.loglimit: every rendered log line fits PIPE_BUF with its newline (issue 10, F14)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ewfd import loglimit
from ewfd.logging import render

BIG = 90_000


def rendered(**fields: Any) -> tuple[str, dict[str, Any]]:
    line = render(None, "error", {"event": "step.failed", **fields})
    return line, json.loads(line)


def fits(line: str) -> bool:
    return loglimit.size(line) + 1 <= loglimit.MAX_LINE


def test_a_short_line_is_left_alone() -> None:
    line, parsed = rendered(error="boom", workflow_uuid="u-1")
    assert (parsed["error"], parsed["workflow_uuid"]) == ("boom", "u-1")
    assert "cut" not in line


@pytest.mark.parametrize("text", [
    "x" * BIG,                      # ASCII
    "é" * BIG,                      # two bytes a character
    "\U0001f600" * BIG,             # four
    "\x01" * BIG,                   # six, escaped as \u0001
    "caf\ud83d" * (BIG // 4),       # a lone surrogate, written as "?"
])
def test_a_long_value_is_cut_in_its_middle_and_the_line_fits(text: str) -> None:
    line, parsed = rendered(error="head " + text + " tail", workflow_uuid="u-1")
    assert fits(line)
    assert parsed["workflow_uuid"] == "u-1" and parsed["event"] == "step.failed"
    assert parsed["error"].startswith("head ") and parsed["error"].endswith(" tail")
    assert "chars cut]" in parsed["error"]
    assert loglimit.size(line) + 1 > loglimit.MAX_LINE - 200   # not cut more than needed


def test_several_long_values_are_all_cut_and_small_ones_kept() -> None:
    line, parsed = rendered(error="e" * BIG, output="o" * 5000, exception="t" * 3000,
                            step="short", attempt=3, extra={"k": ["v" * BIG]})
    assert fits(line)
    assert (parsed["step"], parsed["attempt"]) == ("short", 3)


def test_hundreds_of_fields_or_a_huge_key_leave_a_line_that_says_so() -> None:
    many = {f"field_{i}": "v" * 60 for i in range(300)}
    line, parsed = rendered(**many)
    assert fits(line) and parsed["event"] == "step.failed"
    assert "byte limit" in parsed["log_line_dropped"]
    line, parsed = rendered(**{"k" * BIG: 1})
    assert fits(line) and "log_line_dropped" in parsed


def test_cut_keeps_both_ends() -> None:
    assert loglimit.cut("abcdefghij", 4) == "ab ...[6 chars cut]... ij"
    assert loglimit.cut("abc", 4) == "abc"
