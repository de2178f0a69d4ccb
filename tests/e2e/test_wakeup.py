"""Every enqueue wakes an idle worker: none waits for the fallback poll.

Another process inserts workflows one at a time by plain SQL (CONTRACT section
5) and waits for each to complete, as ``scripts/bench`` W2 does. The queue's
``poll_interval`` is 5 s, so only the wake-up mechanism can explain a start
within the bound; the bound (500 ms, from the commit to completion) is far above the usual
latency (a few ms) and far below the fallback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Daemon

pytestmark = pytest.mark.e2e

COUNT = 300
BOUND_MS = 500.0

# The enqueuer: a separate program, as a user's would be. Gaps between enqueues vary so
# inserts land in every phase of a worker's cycle (mid-claim, just after a completion...).
ENQUEUER = r"""
import json, random, sqlite3, sys, time
db, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
conn = sqlite3.connect(db, isolation_level=None, timeout=30)
latencies = []
for i in range(count):
    rowid = conn.execute("INSERT INTO jobs (queue, workflow, state) VALUES "
                         "('default', 'three', ?)", (json.dumps({"n": i}),)).lastrowid
    t0 = time.perf_counter()   # committed: the writer's own commit may stall on a busy machine
    deadline = time.monotonic() + 20
    while conn.execute("SELECT status FROM jobs WHERE id=?", (rowid,)).fetchone()[0] \
            != "completed":
        if time.monotonic() > deadline:
            sys.exit(f"workflow {rowid} did not complete in 20 s")
        time.sleep(0.0005)
    latencies.append((time.perf_counter() - t0) * 1000)
    time.sleep(random.uniform(0, 0.03))
conn.close()
with open(out, "w") as f:
    json.dump(latencies, f)
"""


@pytest.mark.timeout(180)
def test_no_enqueue_waits_for_the_fallback_poll(daemon: Daemon, tmp_path: Path) -> None:
    daemon.configure(queues={"default": {"workers": 2, "poll_interval": "5s"}})
    daemon.start()
    out = tmp_path / "latencies.json"
    result = subprocess.run([sys.executable, "-c", ENQUEUER, str(daemon.db), str(COUNT),
                             str(out)], capture_output=True, text=True, timeout=150,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    latencies = sorted(json.loads(out.read_text()))
    assert len(latencies) == COUNT
    p50 = latencies[COUNT // 2]
    slow = [round(x) for x in latencies if x >= BOUND_MS]
    assert not slow, f"{len(slow)} of {COUNT} waited >= {BOUND_MS:g} ms: {slow} (p50 {p50:.1f} ms)"
