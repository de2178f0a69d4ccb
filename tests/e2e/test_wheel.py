"""The wheel, installed in a fresh venv, carries what a server install needs without a
checkout: the ``ewfd`` command, the sample config and the unit file (``ewfd init``), and
the LICENSE."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def sh(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.mark.timeout(300)
def test_the_wheel_ships_the_samples_and_ewfd_init_writes_them(tmp_path: Path) -> None:
    sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", ROOT)
    (wheel,) = (tmp_path / "dist").glob("ewfd-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert zf.read("ewfd/data/ewfd.toml") == (ROOT / "etc" / "ewfd.toml").read_bytes()
        assert zf.read("ewfd/data/ewfd.service") == (
            ROOT / "systemd" / "ewfd.service").read_bytes()
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE")
               for n in names)
    venv = tmp_path / "venv"
    sh(sys.executable, "-m", "venv", venv)
    sh(venv / "bin" / "pip", "install", "-q", wheel)
    assert sh(venv / "bin" / "ewfd", "--version").strip() == "ewfd, version 0.1.0"
    out = tmp_path / "setup"
    sh(venv / "bin" / "ewfd", "init", "--systemd", out, cwd=tmp_path)
    unit = (out / "ewfd.service").read_text()
    assert f"ExecStart={venv / 'bin' / 'ewfd'} run --config /etc/ewfd/ewfd.toml" in unit
    assert 'database = "/var/lib/ewfd/ewfd.db"' in (out / "ewfd.toml").read_text()
