"""The ``ewfd`` command: ``ewfd run`` (the daemon) and ``ewfd ctl`` (operate it)."""

from __future__ import annotations

import click

from .. import __version__
from .run import run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ewfd")
def main() -> None:
    """ewfd: durable workflows for Python, run as a daemon.

    \b
    ewfd run            start the supervisor and its worker pools (foreground)
    ewfd ctl ...        inspect and operate queues, workflows and workers
    """


main.add_command(run)

try:
    from .ctl import ctl  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - ctl is optional while it is being built
    pass
else:
    main.add_command(ctl)
