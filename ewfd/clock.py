"""The host clock: what leases and retry due times are measured on.

The wall clock (``time.time()``) jumps when it is stepped: by an operator, by NTP
at boot, by a VM resumed from a snapshot. A lease stamped on it then expires at
once after a step forward (another process takes over a step that still runs) and
a retry due time lies an hour ahead after a step back (a 4 s wait lasts an hour).

The host clock is ``CLOCK_BOOTTIME`` (never stepped, counts suspend, one clock for
every process on the host) plus an anchor: the wall-clock time of the boot as ewfd
first saw it. The SQLite store records the anchor in the database per boot id, so
every process on the host reads the same time, and the values stored read as epoch
seconds (as long as nobody stepped the clock since the boot, they *are* the epoch).
Where the kernel gives no boot id (not Linux) it is the wall clock itself.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

#: A retry due time further ahead than its own wait plus this is taken as due (it was
#: written under another boot's clock). The slack covers clock readings taken a little
#: apart: a claim reads the clock before it waits for the write lock (up to the store's
#: busy give-up), so its "now" can be older than a hand-back it then sees. So a retry is
#: never delayed by more than its backoff plus this, and never cut short by a late reader.
DUE_SLACK = 60.0


@functools.cache
def boot_id() -> str:
    """This boot's id (Linux), or "" where the kernel does not say."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def since_boot() -> float:
    """Seconds since boot on a clock no step moves; the wall clock where there is none."""
    if boot_id():
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.time()


@dataclass(frozen=True)
class HostClock:
    """``now()`` = ``anchor`` + seconds since boot: epoch-like, immune to clock steps."""

    anchor: float

    def now(self) -> float:
        return self.anchor + since_boot()


def local() -> HostClock:
    """A host clock anchored on this process's reading of the wall clock (for a store
    that only this process uses, or when the database cannot record an anchor)."""
    return HostClock(time.time() - since_boot() if boot_id() else 0.0)
