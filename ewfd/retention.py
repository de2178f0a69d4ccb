"""Retention: the daemon deletes finished workflows older than ``[retention]`` allows.

A maintenance service of the supervisor: a pass every ``interval`` deletes, per
status, the workflows (with their step history) last updated longer ago than
that status is kept, through the store's ``prune``: batches of ``BATCH`` rows,
each one short transaction. A pass stops after ``BUDGET`` seconds of work so the
supervisor's loop is never held long; when it stopped with rows left, the next
pass comes at the next tick instead of after ``interval``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .config import FINISHED, RetentionConfig
from .model import WorkflowStatus
from .store.base import Store

BATCH = 200          # rows per transaction: milliseconds of write lock, history included
BUDGET = 0.25        # seconds of deleting per pass, shared by the statuses


class Retention:
    """The retention service: :meth:`due` says when, :meth:`run_once` does one pass."""

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, batch: int = BATCH,
                 budget: float = BUDGET) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._batch = batch
        self._budget = budget
        self._next = -float("inf")
        self.last_pass: float | None = None            # epoch time of the last pass
        self.pruned = dict.fromkeys(FINISHED, 0)       # deleted since the daemon started

    def due(self, config: RetentionConfig) -> bool:
        return config.enabled and self._monotonic() >= self._next

    def run_once(self, store: Store, config: RetentionConfig, log: Any) -> dict[str, int]:
        """One pass: the number deleted per status with a policy; logs ``retention.pruned``
        when it deleted anything."""
        start = self._monotonic()
        self._next = start + config.interval     # also when the store fails mid-pass
        kept = {s: keep for s in FINISHED if (keep := config.keep(s)) is not None}
        share = self._budget / max(1, len(kept))
        counts, more = {}, False
        for status, keep in kept.items():
            counts[status], left = self._prune(store, status, self._clock() - keep, share)
            more = more or left
        if more:
            self._next = start                   # a backlog: go on at the next tick
        self.last_pass = self._clock()
        for status, n in counts.items():
            self.pruned[status] += n
        if any(counts.values()):
            log.info("retention.pruned", **counts, more=more,
                     duration_ms=round((self._monotonic() - start) * 1000, 3))
        return counts

    def _prune(self, store: Store, status: str, cutoff: float,
               budget: float) -> tuple[int, bool]:
        """(deleted, whether rows may be left) for one status within ``budget`` seconds."""
        began = self._monotonic()
        deleted = 0
        for n in store.prune(older_than=cutoff, statuses=[WorkflowStatus(status)],
                             batch=self._batch):
            deleted += n
            if n < self._batch:
                return deleted, False
            if self._monotonic() - began >= budget:
                return deleted, True
        return deleted, False

    def describe(self, config: RetentionConfig) -> dict[str, Any]:
        """The policy in force and what it did, for the runtime file (``ctl queues``)."""
        return {**{s: config.keep(s) for s in FINISHED}, "interval": config.interval,
                "last_pass_at": self.last_pass, "pruned": dict(self.pruned)}
