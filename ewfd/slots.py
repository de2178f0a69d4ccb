"""A scoreboard in shared memory: each worker's state, as its supervisor sees it.

An anonymous ``MAP_SHARED`` mmap made before the fork; each worker writes its
own slot (what it runs, the step's deadline), the supervisor reads them all to
renew leases, kill steps that overran their timeout, and publish what
``ewfd ctl workers`` shows. No locks: one writer per slot, and a torn read is
harmless because the supervisor re-reads every tick.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import dataclass

IDLE, RUNNING, STOPPING, STARTING = 0, 1, 2, 3
STATE_NAMES = {IDLE: "idle", RUNNING: "running", STOPPING: "stopping", STARTING: "starting"}

# state, tasks done, heartbeat, step deadline (0 = none), changed at, uuid, step name; times
# are time.monotonic(): CLOCK_MONOTONIC is one clock for every process on Linux, and a
# wall-clock adjustment must not kill a step for its timeout. Then the step's progress
# (ctx.progress): fraction (-1 = none reported) and message, written apart by the step.
_HEAD = struct.Struct("<iiddd36s64s")
_PROGRESS = struct.Struct("<d96s")
_FORMAT = struct.Struct("<iiddd36s64sd96s")
NO_PROGRESS = -1.0
_DEADLINE = struct.Struct("<d")
_DEADLINE_AT = struct.calcsize("<iid")   # the deadline's offset in a slot


@dataclass(frozen=True)
class SlotView:
    state: int
    tasks: int
    heartbeat: float
    deadline: float
    started: float
    workflow_uuid: str | None
    step: str | None
    progress: float | None = None
    progress_message: str | None = None

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, "unknown")


class Scoreboard:
    def __init__(self, size: int) -> None:
        self.size = size
        self._map = mmap.mmap(-1, _FORMAT.size * size)

    def slot(self, index: int) -> Slot:
        return Slot(self._map, index * _FORMAT.size)

    def read(self, index: int) -> SlotView:
        state, tasks, beat, deadline, started, uuid, step, fraction, message = (
            _FORMAT.unpack_from(self._map, index * _FORMAT.size))
        text_uuid = uuid.rstrip(b"\0").decode("ascii", "replace") or None
        text_step = step.rstrip(b"\0").decode("utf-8", "replace") or None
        if not 0.0 <= fraction <= 1.0:    # none reported (or a torn read: next tick)
            return SlotView(state, tasks, beat, deadline, started, text_uuid, text_step)
        text = message.rstrip(b"\0").decode("utf-8", "ignore") or None   # a cut character
        return SlotView(state, tasks, beat, deadline, started, text_uuid, text_step,
                        fraction, text)

    def reset(self, index: int) -> None:
        _FORMAT.pack_into(self._map, index * _FORMAT.size, STARTING, 0, time.monotonic(), 0.0,
                          time.monotonic(), b"", b"", NO_PROGRESS, b"")


class Slot:
    """The writer's side: one worker's view of its own slot."""

    def __init__(self, buffer: mmap.mmap, offset: int) -> None:
        self._buf = buffer
        self._off = offset
        self.tasks = 0
        self._pid = os.getpid()   # the worker (a slot is made in the forked worker)
        self._deadline = 0.0

    def _write(self, state: int, deadline: float, uuid: str | None, step: str | None) -> None:
        if os.getpid() != self._pid:
            # A process a step forked shares the mapping: it must never mark the worker idle
            # (the supervisor would stop renewing the lease of the step still running) or
            # clear the step's deadline.
            return
        self._deadline = deadline
        now = time.monotonic()
        _FORMAT.pack_into(self._buf, self._off, state, self.tasks, now, deadline, now,
                          (uuid or "").encode()[:36], (step or "").encode()[:64],
                          NO_PROGRESS, b"")

    def idle(self) -> None:
        self._write(IDLE, 0.0, None, None)

    def running(self, uuid: str, step: str | None, deadline: float = 0.0) -> None:
        self._write(RUNNING, deadline, uuid, step)

    def hold_deadline(self, held: bool) -> None:
        """While the worker's main thread is inside a store write the supervisor does not kill
        it for its step's timeout: the timeout is held back until the write ends (a step's
        own ``engine.run`` waiting on a lock cannot react to it). After the write, the grace
        counts from the write's end at the earliest."""
        if not self._deadline or os.getpid() != self._pid:   # (a process a step forked)
            return
        value = 0.0 if held else max(self._deadline, time.monotonic())
        _DEADLINE.pack_into(self._buf, self._off + _DEADLINE_AT, value)

    def stopping(self) -> None:
        self._write(STOPPING, 0.0, None, None)

    def progress(self, fraction: float, message: str | None) -> None:
        """The running step's report (every ``ctx.progress`` call: a memory write)."""
        if os.getpid() != self._pid:   # a process the step forked: not the worker's report
            return
        _PROGRESS.pack_into(self._buf, self._off + _HEAD.size, fraction,
                            (message or "").encode("utf-8", "backslashreplace")[:96])

    def task_done(self) -> None:
        self.tasks += 1
