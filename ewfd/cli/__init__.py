"""The ``ewfd`` command: ``ewfd run`` (the daemon) and ``ewfd ctl`` (operate it)."""

from __future__ import annotations

import contextlib
import sys

import click

from .. import __version__, codec
from .ctl import ctl
from .init import init
from .run import run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ewfd")
def main() -> None:
    """ewfd: durable workflows for Python, run as a daemon.

    \b
    ewfd run            start the supervisor and its worker pools (foreground)
    ewfd ctl ...        inspect and operate queues, workflows and workers
    ewfd init [DIR]     write a sample ewfd.toml (--systemd: and ewfd.service)
    """
    # What is printed (a path, a state, a log line) may hold text UTF-8 cannot encode: it
    # is escaped (the codec's rule), never a traceback; in JSON the escape reads back exact.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors=codec.TEXT_ERRORS)  # type: ignore[union-attr]


main.add_command(run)
main.add_command(ctl)
main.add_command(init)
