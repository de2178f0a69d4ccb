"""sd_notify(3) without libsystemd: tell systemd we are ready, stopping or alive.

With ``Type=notify`` systemd waits for ``READY=1`` before it considers the
service started, and with ``WatchdogSec=`` it kills a service that stops sending
``WATCHDOG=1``. The protocol is one datagram of ``KEY=value`` lines sent to the
AF_UNIX socket named by ``$NOTIFY_SOCKET``; that is simple enough not to need a
dependency. Every function is a no-op returning False outside systemd, and none
of them raises: a notification failing must never take the daemon down.

Only the supervisor should call these (the unit says ``NotifyAccess=main``);
forked workers inherit ``$NOTIFY_SOCKET`` but their messages would be dropped.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

__all__ = [
    "notify",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog",
    "watchdog_interval",
]


def _address(raw: str) -> str | None:
    """Map ``$NOTIFY_SOCKET`` to a socket address; "@name" is Linux's abstract namespace."""
    if raw.startswith("@"):
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    return None  # e.g. "vsock:..." from newer systemd: not supported here


def notify(message: str, env: Mapping[str, str] = os.environ) -> bool:
    """Send ``message`` (newline-separated ``KEY=value`` lines) to ``$NOTIFY_SOCKET``.

    Returns True if the datagram was sent, False if there is no socket to send to
    or sending failed. Never raises OSError.
    """
    raw = env.get("NOTIFY_SOCKET")
    if not raw or not message:
        return False
    address = _address(raw)
    family = getattr(socket, "AF_UNIX", None)
    if address is None or family is None:
        return False
    try:
        with socket.socket(family, socket.SOCK_DGRAM | getattr(socket, "SOCK_CLOEXEC", 0)) as s:
            s.sendto(message.encode("utf-8"), address)
    except (OSError, ValueError):  # ValueError: NUL inside a filesystem path
        return False
    return True


def _one_line(text: str) -> str:
    """STATUS= must stay on one line, or the rest would be parsed as more assignments."""
    return " ".join(text.splitlines())


def ready(status: str | None = None, env: Mapping[str, str] = os.environ) -> bool:
    """Startup finished (``READY=1``); also sent after a reload completes."""
    message = "READY=1"
    if status is not None:
        message += f"\nSTATUS={_one_line(status)}"
    return notify(message, env)


def stopping(status: str | None = None, env: Mapping[str, str] = os.environ) -> bool:
    """Graceful shutdown began (``STOPPING=1``), so systemd does not report a failure."""
    message = "STOPPING=1"
    if status is not None:
        message += f"\nSTATUS={_one_line(status)}"
    return notify(message, env)


def reloading(env: Mapping[str, str] = os.environ) -> bool:
    """A reload (SIGHUP) began; send :func:`ready` when done.

    ``MONOTONIC_USEC`` is included because ``Type=notify-reload`` requires it and
    plain ``Type=notify`` ignores it.
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}", env)


def watchdog(env: Mapping[str, str] = os.environ) -> bool:
    """Keep-alive (``WATCHDOG=1``); send it at half of :func:`watchdog_interval`."""
    return notify("WATCHDOG=1", env)


def status(text: str, env: Mapping[str, str] = os.environ) -> bool:
    """Free-form status shown by ``systemctl status``."""
    return notify(f"STATUS={_one_line(text)}", env)


def watchdog_interval(env: Mapping[str, str] = os.environ) -> float | None:
    """The watchdog timeout in seconds, or None if no watchdog is expected from us.

    Mirrors sd_watchdog_enabled(3): ``$WATCHDOG_USEC`` must be a positive integer,
    and ``$WATCHDOG_PID``, if set, must be our pid (so forked children that
    inherited the environment do not think the watchdog is theirs).
    """
    raw_usec = env.get("WATCHDOG_USEC")
    if raw_usec is None:
        return None
    try:
        usec = int(raw_usec.strip())
    except ValueError:
        return None
    if usec <= 0:
        return None
    raw_pid = env.get("WATCHDOG_PID")
    if raw_pid is not None and raw_pid.strip() != "":
        try:
            pid = int(raw_pid.strip())
        except ValueError:
            return None
        if pid != os.getpid():
            return None
    return usec / 1_000_000
