"""``ctx.progress``: validation, and the rate limit of what it publishes, on a fake clock."""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable
from typing import Any

import pytest

from ewfd.context import StepContext
from ewfd.progress import INTERVAL, ProgressReporter, RateLimit


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeScheduler:
    """Holds scheduled publishes until the test runs the ones due at the clock's time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.planned: list[tuple[float, Callable[[], None]]] = []

    def schedule(self, when: float, fn: Callable[[], None]) -> None:
        self.planned.append((when, fn))

    def run_due(self) -> None:
        due = [p for p in self.planned if p[0] <= self.clock.now]
        self.planned = [p for p in self.planned if p[0] > self.clock.now]
        for _, fn in sorted(due, key=lambda p: p[0]):
            fn()


def reporter(clock: FakeClock, scheduler: FakeScheduler,
             published: list[tuple[float, str | None, float]],
             changes: list[tuple[float, str | None]] | None = None) -> ProgressReporter:
    def publish(fraction: float, message: str | None) -> None:
        published.append((fraction, message, clock.now))

    def on_change(fraction: float, message: str | None) -> None:
        if changes is not None:
            changes.append((fraction, message))

    return ProgressReporter(publish=publish, on_change=on_change, clock=clock,
                            scheduler=scheduler)


# -- the rate limit --------------------------------------------------------------------------
def test_rate_limit_publishes_the_first_value_at_once_then_once_per_interval() -> None:
    rate = RateLimit(1.0)
    assert rate.offer(10.0) == 10.0        # nothing published yet: now
    assert rate.offer(10.1) is None        # already planned: that publish carries it
    rate.published(10.0)
    assert rate.offer(10.2) == 11.0        # within the interval: at its end
    assert rate.offer(10.9) is None
    rate.published(11.0)
    assert rate.offer(15.0) == 15.0        # long after: now again


def test_a_burst_of_reports_publishes_twice_the_first_and_the_last() -> None:
    clock = FakeClock()
    scheduler = FakeScheduler(clock)
    published: list[tuple[float, str | None, float]] = []
    changes: list[tuple[float, str | None]] = []
    progress = reporter(clock, scheduler, published, changes)
    for i in range(1001):
        clock.now = 100.0 + i * 0.0005          # 1,001 reports within half a second
        progress.report(i / 1000, f"row {i}")
        scheduler.run_due()
    assert published == [(0.0, "row 0", 100.0)]
    assert len(changes) == 1001 and changes[-1] == (1.0, "row 1000")   # memory: every call
    assert (progress.fraction, progress.message) == (1.0, "row 1000")
    assert [when for when, _ in scheduler.planned] == [100.0 + INTERVAL]
    clock.now = 100.0 + INTERVAL
    scheduler.run_due()
    assert published[-1] == (1.0, "row 1000", 101.0)  # the latest value, at the window's end
    assert len(published) == 2 and not scheduler.planned


def test_steady_reports_publish_at_most_once_per_interval() -> None:
    clock = FakeClock()
    scheduler = FakeScheduler(clock)
    published: list[tuple[float, str | None, float]] = []
    progress = reporter(clock, scheduler, published)
    for i in range(1, 101):                      # ten seconds, a report every 100 ms
        clock.now = 100.0 + i * 0.1
        progress.report(i / 100)
        scheduler.run_due()
    times = [when for _, _, when in published]
    assert 9 <= len(times) <= 11
    assert all(b - a >= INTERVAL - 1e-9 for a, b in itertools.pairwise(times))


def test_a_quiet_step_publishes_its_next_report_at_once() -> None:
    clock = FakeClock()
    scheduler = FakeScheduler(clock)
    published: list[tuple[float, str | None, float]] = []
    progress = reporter(clock, scheduler, published)
    progress.report(0.1)
    scheduler.run_due()
    clock.now += 60
    progress.report(0.2)
    scheduler.run_due()
    assert [(f, t) for f, _, t in published] == [(0.1, 100.0), (0.2, 160.0)]


def test_nothing_is_published_after_close() -> None:
    clock = FakeClock()
    scheduler = FakeScheduler(clock)
    published: list[tuple[float, str | None, float]] = []
    changes: list[tuple[float, str | None]] = []
    progress = reporter(clock, scheduler, published, changes)
    progress.report(0.1)
    progress.close()                          # the step ended before the publisher ran
    clock.now += 5
    progress.report(0.9)                      # a thread the step left behind
    scheduler.run_due()
    assert published == []
    assert changes == [(0.1, None)]           # nor in the slot, which the next step owns
    assert progress.fraction == 0.9           # the in-memory value still follows


def test_close_waits_for_a_publish_in_flight() -> None:
    clock = FakeClock()
    scheduler = FakeScheduler(clock)
    entered, finish = threading.Event(), threading.Event()
    order: list[str] = []

    def publish(fraction: float, message: str | None) -> None:
        entered.set()
        finish.wait(10)
        order.append("published")

    progress = ProgressReporter(publish=publish, clock=clock, scheduler=scheduler)
    progress.report(0.5)
    flusher = threading.Thread(target=scheduler.run_due)
    flusher.start()
    assert entered.wait(10)
    closer = threading.Thread(target=lambda: (progress.close(), order.append("closed")))
    closer.start()
    assert not closer.join(0.2) and closer.is_alive()   # still waiting for the publish
    finish.set()
    closer.join(10)
    flusher.join(10)
    assert order == ["published", "closed"]


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0, 0.0, 0.5, 1, 1.0, 1e-9])
def test_fractions_between_0_and_1_are_accepted(fraction: float) -> None:
    progress = ProgressReporter()
    progress.report(fraction)
    assert progress.fraction == float(fraction)


@pytest.mark.parametrize("fraction", [-0.01, 1.01, 50, math.nan, math.inf, -math.inf])
def test_fractions_outside_0_to_1_are_refused(fraction: float) -> None:
    progress = ProgressReporter()
    with pytest.raises(ValueError, match=r"ctx\.progress: fraction must be between 0 and 1 "
                                         r"\(0.25 = a quarter done\), got"):
        progress.report(fraction)
    assert progress.fraction is None


@pytest.mark.parametrize("fraction", ["0.5", None, True, [0.5]])
def test_fractions_that_are_not_numbers_are_refused(fraction: Any) -> None:
    with pytest.raises(TypeError, match=r"ctx\.progress: fraction must be a number"):
        ProgressReporter().report(fraction)


def test_the_message_must_be_text_and_is_kept_short() -> None:
    progress = ProgressReporter()
    with pytest.raises(TypeError, match=r"ctx\.progress: message must be a string or None"):
        progress.report(0.5, 42)  # type: ignore[arg-type]
    progress.report(0.5, "x" * 1000)
    assert progress.message is not None and len(progress.message) == 200
    progress.report(0.6, "caf\udcff")         # text UTF-8 cannot hold is escaped, not refused
    assert progress.message == "caf\\udcff"
    progress.report(0.7)
    assert progress.message is None


def test_a_step_context_made_by_hand_takes_progress_in_memory() -> None:
    ctx = StepContext("crunch", "some-uuid", 1, None, logger=None)
    ctx.progress(0.25, "a quarter")
    with pytest.raises(ValueError):
        ctx.progress(2)
