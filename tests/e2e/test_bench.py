"""scripts/bench runs and produces well-formed figures (no timing is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_bench_smoke_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench"), "--smoke",
                             "--json", str(out)], capture_output=True, text=True, timeout=110,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(out.read_text())
    for key in ("w0_normal_wf_s", "w0_full_wf_s", "w1_wf_s", "w1_full_wf_s", "w5_wf_s"):
        entry = figures[key]
        assert 0 < entry["min"] <= entry["median"] <= entry["max"], (key, entry)
    for key in ("w2_latency_ms", "w2_after_commit_ms"):
        lat = figures[key]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"], (key, lat)
    idle = figures["w3_w4"]
    assert idle["idle_cpu_percent"] >= 0
    assert idle["worker_rss_mib_idle_max"] > 0 and idle["supervisor_rss_mib_idle"] > 0
    assert set(figures["w6_wf_s"]) == {"1", "2"}
    assert set(figures["ratios"]) == {"w1_over_w0", "w1_full_over_w0_full", "w5_over_w1"}
    assert all(v > 0 for v in figures["ratios"].values())
    for line in ("W0 ceiling", "W1 throughput", "W2 latency", "W3 idle CPU", "W4 RSS",
                 "W5 throughput", "W6 throughput", "W1/W0"):
        assert line in result.stdout, line


@pytest.mark.timeout(120)
def test_bench_runs_w2_alone_with_its_tail(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench"), "--smoke",
                             "--only", "w2", "--w2-count", "20", "--json", str(out)],
                            capture_output=True, text=True, timeout=110, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert {"w2_latency_ms", "w2_after_commit_ms"} <= set(figures)
    assert "w1_wf_s" not in figures and figures["ratios"] == {}
    assert figures["sizes"]["w2"] == 20
    assert "p99" in result.stdout and "W1 throughput" not in result.stdout
