"""``ewfd init``: write the sample config (and, with ``--systemd``, the unit file) that ship
in the package, so an installed ewfd needs no source checkout to be set up."""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path

import click

from .common import Failure

CONFIG, UNIT = "ewfd.toml", "ewfd.service"
SERVER_DATABASE = "/var/lib/ewfd/ewfd.db"      # the unit's StateDirectory
SHIPPED_EXEC = "ExecStart=/opt/ewfd/bin/ewfd run"


def sample(name: str) -> str:
    """The text of a file shipped in ``ewfd/data``."""
    return (resources.files("ewfd") / "data" / name).read_text(encoding="utf-8")


def server_config(text: str) -> str:
    """The sample config with the database where the unit gives the daemon a place."""
    line = 'database = "ewfd.db"\n'
    if line not in text:        # the sample changed: better refuse than write a wrong file
        raise Failure(f"the shipped {CONFIG} has no line {line.strip()!r} to set")
    return text.replace(line, f'database = "{SERVER_DATABASE}"\n', 1)


# Where the unit's sandbox hides paths from the daemon: an ExecStart there cannot start.
HIDDEN_BY_UNIT = {"/home": "ProtectHome=yes", "/root": "ProtectHome=yes",
                  "/run/user": "ProtectHome=yes", "/tmp": "PrivateTmp=yes",
                  "/var/tmp": "PrivateTmp=yes"}


def hidden_by_unit(paths: list[Path]) -> str | None:
    """Why the unit cannot run an installation at one of ``paths``, or None."""
    for path in paths:
        for top, setting in HIDDEN_BY_UNIT.items():
            if path == Path(top) or Path(top) in path.parents:
                return (f"warning: the unit's ExecStart needs {path}, under {top}, which "
                        f"its {setting} hides from the daemon: it could not start. "
                        "Install ewfd in a venv such as /opt/ewfd, made with a Python outside "
                        "/home, /root and /tmp (the README's systemd section), and run its "
                        "`ewfd init --systemd`.")
    return None


def unit_for_this_install(text: str) -> str:
    """The unit with ExecStart pointing at this installation's ewfd."""
    script = Path(sys.executable).parent / "ewfd"
    command = str(script) if script.exists() else f"{sys.executable} -m ewfd"
    if SHIPPED_EXEC not in text:
        raise Failure(f"the shipped {UNIT} has no line {SHIPPED_EXEC!r} to adapt")
    return text.replace(SHIPPED_EXEC, f"ExecStart={command} run", 1)


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--systemd", "for_systemd", is_flag=True,
              help=f"Also write {UNIT} for this installation, and set the config's database "
                   f"to {SERVER_DATABASE}.")
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def init(directory: Path, for_systemd: bool, force: bool) -> None:
    """Write a sample ewfd.toml (and ewfd.service) to DIRECTORY.

    DIRECTORY defaults to the current one and is created if missing. Every
    key of the config is shown with its default and meaning; set `app` to
    your Engine, then `ewfd run --config DIRECTORY/ewfd.toml`. Existing files
    are left alone unless --force.

    With --systemd the unit's ExecStart is this installation's ewfd, and the
    output says where to install both files (the same steps as the README).
    """
    files = {CONFIG: sample(CONFIG)}
    if for_systemd:
        files = {CONFIG: server_config(files[CONFIG]), UNIT: unit_for_this_install(sample(UNIT))}
    targets = {name: directory / name for name in files}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise Failure(f"{', '.join(existing)} already {verb}: pass --force to overwrite")
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        targets[name].write_text(text, encoding="utf-8")
        click.echo(f"wrote {targets[name]}")
    click.echo(_next_steps(targets, for_systemd))
    warning = for_systemd and hidden_by_unit([Path(sys.executable).parent,
                                              Path(sys.executable).resolve().parent])
    if warning:
        click.echo(warning, err=True)


def _next_steps(targets: dict[str, Path], for_systemd: bool) -> str:
    config = targets[CONFIG]
    if not for_systemd:
        return (f"next: set app = in {config} to your Engine (module:attribute), then\n"
                f"  ewfd run --config {config}")
    where = os.fspath(config.parent)
    return "\n".join([
        "next, as root (the README's systemd section):",
        "  useradd --system --home-dir /var/lib/ewfd --shell /usr/sbin/nologin ewfd",
        f"  install -D -m 0640 -g ewfd {where}/{CONFIG} /etc/ewfd/{CONFIG}",
        f"  install -m 0644 {where}/{UNIT} /etc/systemd/system/{UNIT}",
        f"  then set app = in /etc/ewfd/{CONFIG} to your Engine (module:attribute), and",
        "  systemctl daemon-reload && systemctl enable --now ewfd",
    ])
