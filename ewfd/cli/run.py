"""``ewfd run``: load the config (and the flags on top of it) and the app, then hand over to
the supervisor; or, with ``--check``, only say whether all of that would work."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import click
import structlog

from ..app import AppError, load_app
from ..config import CONFIG_SEARCH, Config, ConfigError, Overrides, load_config
from ..engine import Engine
from ..logging import LineWriter, configure
from . import check as checks


@click.command()
@click.option("--config", "config_path", metavar="PATH",
              help=f"TOML config file. Default: {CONFIG_SEARCH}.")
@click.option("--app", metavar="MODULE:ATTR",
              help="The Engine to run, e.g. shop:engine (found from the current directory "
              "first). Overrides the config's app.")
@click.option("--db", "database", metavar="PATH",
              help="The database file. Overrides the config's database.")
@click.option("--queue", "queues", metavar="NAME[=WORKERS]", multiple=True,
              help="Run this queue with this many workers; repeat for more. Overrides the "
              "config's queue of that name (its other settings are kept).")
@click.option("--log-level", metavar="LEVEL",
              help="debug, info, warning or error. Overrides the config's log_level.")
@click.option("--log-file", metavar="PATH", help='Where the JSON log goes ("-": stdout). '
              "Overrides the config's log_file.")
@click.option("--check", is_flag=True, help="Check the config, the app and the database, "
              "print a summary and exit (0 when ewfd run would start, 2 when not).")
def run(config_path: str | None, app: str | None, database: str | None,
        queues: tuple[str, ...], log_level: str | None, log_file: str | None,
        check: bool) -> None:
    """Run the supervisor in the foreground.

    It forks `workers` processes per queue, which claim workflows from the
    database and run them; logs are JSON lines on stdout or `log_file`.
    Without a config file, the flags are the config:

    \b
      ewfd run --app shop:engine --queue orders=4 --db ./shop.db

    Signals: TERM/INT stop gracefully (a second one, or QUIT, stops at once),
    TSTP (Ctrl-Z) pauses the daemon and its workers, HUP reloads the config
    (log_level, log_file, queues and the rest; database and app need a
    restart), USR1 reopens the log file.
    """
    overrides = Overrides(app=app, database=database, log_file=log_file,
                          log_level=log_level, queues=queues)

    def reload() -> Config:
        return load_config(config_path, overrides=overrides)

    try:
        config = reload()
    except ConfigError as exc:
        _fail(str(exc), exc.exit_code)
    if check:
        _check(config, overrides)
    try:
        writer = LineWriter(config.log_file)
    except OSError as exc:
        _fail(f"{checks.where(config, overrides, 'log_file')}: cannot open {config.log_file}: "
              f"{exc.strerror}")
    configure(writer, config.log_level)
    if config.log_file != "-" and sys.stderr.isatty():   # a person at a terminal sees nothing else
        print(f"ewfd: logging to {config.log_file} (ewfd ctl tail --follow reads it)",
              file=sys.stderr)
    # The log stream owns stdout (the writer holds its own copy of it): whatever else is
    # printed from here on (the app's import, a library) goes to stderr instead.
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    engine = _load(config, overrides)
    from ..errors import StoreError
    from ..supervisor import Supervisor

    def apply_logging(new: Config) -> None:
        writer.switch(new.log_file)
        configure(writer, new.log_level)

    try:
        code = Supervisor(config, engine, reopen_log=writer.reopen, reload_config=reload,
                          apply_logging=apply_logging).run()
    except StoreError as exc:
        structlog.get_logger("ewfd").error("supervisor.failed", error=str(exc))
        _fail(str(exc), 1)
    sys.exit(code)


def _load(config: Config, overrides: Overrides) -> Engine:
    try:
        return load_app(config.app, config.app_path)
    except AppError as exc:
        _fail(f"{checks.where(config, overrides, 'app')}: {exc}")


def _check(config: Config, overrides: Overrides) -> NoReturn:
    """``--check``: everything ``ewfd run`` needs before it forks, tried without writing."""
    try:
        problems = checks.files(config, overrides)
        if problems:
            _fail(problems[0])
        sys.stdout.flush()
        saved = os.dup(sys.stdout.fileno())   # what the app prints while it loads: stderr
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        try:
            engine = _load(config, overrides)
        finally:
            sys.stdout.flush()
            os.dup2(saved, sys.stdout.fileno())
            os.close(saved)
        click.echo(checks.summary(config, overrides, engine))
    except checks.CheckFailed as exc:
        _fail(str(exc))
    sys.exit(0)


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"ewfd: {message}", err=True)
    sys.exit(code)
