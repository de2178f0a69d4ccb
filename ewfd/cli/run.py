"""``ewfd run``: load the config and the app, then hand over to the supervisor."""

from __future__ import annotations

import os
import sys

import click
import structlog

from ..app import AppError, load_app
from ..config import CONFIG_SEARCH, Config, ConfigError, load_config
from ..logging import LineWriter, configure


@click.command()
@click.option("--config", "config_path", metavar="PATH",
              help=f"TOML config file. Default: {CONFIG_SEARCH}.")
def run(config_path: str | None) -> None:
    """Run the supervisor in the foreground.

    It forks `workers` processes per queue, which claim workflows from the
    database and run them; logs are JSON lines on stdout or `log_file`.
    Signals: TERM/INT stop gracefully (a second one, or QUIT, stops at once),
    TSTP (Ctrl-Z) pauses the daemon and its workers, HUP reloads the config,
    USR1 reopens the log file.
    """
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(f"ewfd: {exc}", err=True)
        sys.exit(exc.exit_code)
    try:
        writer = LineWriter(config.log_file)
    except OSError as exc:
        click.echo(f"ewfd: config: {config.path}: ewfd.log_file: cannot open {config.log_file}: "
                   f"{exc.strerror}", err=True)
        sys.exit(2)
    configure(writer, config.log_level)
    # The log stream owns stdout (the writer holds its own copy of it): whatever else is
    # printed from here on (the app's import, a library) goes to stderr instead.
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        engine = load_app(config.app)
    except AppError as exc:
        click.echo(f"ewfd: config: {config.path or '(default)'}: ewfd.app: {exc}", err=True)
        sys.exit(2)
    from ..errors import StoreError
    from ..supervisor import Supervisor

    def reload() -> Config:
        return load_config(config_path)

    try:
        code = Supervisor(config, engine, reopen_log=writer.reopen, reload_config=reload).run()
    except StoreError as exc:
        structlog.get_logger("ewfd").error("supervisor.failed", error=str(exc))
        click.echo(f"ewfd: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)
