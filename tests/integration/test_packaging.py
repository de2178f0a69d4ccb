"""Docs and packaging that a newcomer meets first: the README's first screen, the test
command CI and the README share, the LICENSE, ``ewfd init`` writing the shipped sample
config and unit file, the README and the unit agreeing on paths and modes, and the
features that exist being documented."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from ewfd.cli import main
from ewfd.cli.init import HIDDEN_BY_UNIT, hidden_by_unit
from ewfd.config import load_config

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
UNIT = ROOT / "systemd" / "ewfd.service"
SAMPLE = ROOT / "etc" / "ewfd.toml"


def first_screen() -> str:
    """What a terminal or a repository page shows before scrolling: the first 30 lines."""
    return "\n".join(README.splitlines()[:30])


def test_the_readme_first_screen_says_how_to_run_install_and_test() -> None:
    screen = first_screen()
    assert "ewfd run" in screen and "pip install" in screen and "pytest" in screen
    assert re.search(r"Python (>= ?|≥ ?)3\.11", screen), "which Python"
    assert "Linux" in screen, "which OS"
    assert re.search(r"tests? take[s]? about \d+ minutes?", screen), "how long the tests take"


def readme_test_command() -> str:
    line = next(line for line in first_screen().splitlines() if "pytest" in line)
    return re.sub(r"\s+#.*$", "", line.split("&&")[-1]).strip()


def test_ci_runs_the_readme_test_command_with_progress_by_module() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    ci_command = next(line for line in ci if re.match(r"\s*(\S*/)?pytest\b", line)).strip()
    readme = readme_test_command()
    assert shlex.split(readme)[1:] == shlex.split(ci_command)[1:], (readme, ci_command)
    assert os.path.basename(shlex.split(readme)[0]) == "pytest"
    # progress per test module, not only dots: no -q (pyproject adds none either)
    assert "-q" not in shlex.split(readme)
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"][
        "ini_options"]["addopts"]
    assert "-q" not in addopts.split()


def test_the_license_file_is_the_apache_2_text_the_metadata_names() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text and "http://www.apache.org/licenses/" in text
    assert len(text.split()) > 1500        # the full text, not a pointer to it


def init(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["init", *args])
    return result.exit_code, result.output


def test_init_writes_the_sample_config_and_refuses_to_overwrite(tmp_path: Path) -> None:
    code, output = init(str(tmp_path / "conf"))
    assert code == 0, output
    written = tmp_path / "conf" / "ewfd.toml"
    assert written.read_text() == SAMPLE.read_text()
    assert load_config(written).database == tmp_path / "conf" / "ewfd.db"   # it is valid
    assert f"ewfd run --config {written}" in output
    written.write_text("# mine\n")
    code, output = init(str(tmp_path / "conf"))
    assert code == 1 and f"{written} already exists: pass --force" in output
    assert written.read_text() == "# mine\n"
    assert init(str(tmp_path / "conf"), "--force")[0] == 0
    assert written.read_text() == SAMPLE.read_text()


def test_init_systemd_writes_a_unit_for_this_installation(tmp_path: Path) -> None:
    code, output = init("--systemd", str(tmp_path))
    assert code == 0, output
    config = load_config(tmp_path / "ewfd.toml")
    assert str(config.database) == "/var/lib/ewfd/ewfd.db"
    unit = (tmp_path / "ewfd.service").read_text()
    (exec_start,) = re.findall(r"^ExecStart=(.*)$", unit, re.M)
    program = shlex.split(exec_start)[0]
    assert Path(program).parent == Path(sys.executable).parent
    assert shlex.split(exec_start)[-3:] == ["run", "--config", "/etc/ewfd/ewfd.toml"]
    assert unit.replace(exec_start, "") == UNIT.read_text().replace(
        re.findall(r"^ExecStart=(.*)$", UNIT.read_text(), re.M)[0], "")
    for step in install_steps(UNIT.read_text()):     # what to run next: the same steps
        if step.startswith(("useradd", "install", "systemctl")):
            assert step.replace("ewfd-setup", str(tmp_path)) in output, step


def test_init_systemd_warns_when_the_unit_could_not_run_this_installation() -> None:
    """ProtectHome= and PrivateTmp= hide a venv (or the Python it links to) under /home,
    /root or /tmp from the daemon: say so, rather than leave a unit that cannot start."""
    warning = hidden_by_unit([Path("/opt/ewfd/bin"), Path("/home/me/.pyenv/bin")])
    assert warning is not None and "/home/me/.pyenv/bin, under /home" in warning
    assert "ProtectHome=yes" in warning and "/opt/ewfd" in warning
    assert "PrivateTmp=yes" in (hidden_by_unit([Path("/tmp/venv/bin")]) or "")
    assert hidden_by_unit([Path("/opt/ewfd/bin"), Path("/usr/bin"), Path("/homer/bin")]) is None
    unit = UNIT.read_text()
    assert all(setting in unit for setting in HIDDEN_BY_UNIT.values())


def install_steps(text: str) -> list[str]:
    """The commands of the unit file's ``# Install`` comment."""
    block = text[text.index("# Install"):].split("\n#\n")[0]
    return [line.lstrip("# ").strip() for line in block.splitlines()[1:]
            if line.startswith("#   ") and not line.startswith("#    ")]


def readme_systemd_steps() -> list[str]:
    section = README[README.index("### systemd"):]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    return [re.sub(r"\s+#.*$", "", line).replace("sudo ", "").strip()
            for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_and_the_unit_agree_on_paths_and_modes() -> None:
    unit_steps = install_steps(UNIT.read_text())
    readme_steps = readme_systemd_steps()
    for step in unit_steps:
        assert step in readme_steps, f"unit step not in the README: {step}"
    (exec_start,) = re.findall(r"^ExecStart=(\S+)", UNIT.read_text(), re.M)
    assert any(step.startswith("python3 -m venv " + exec_start.removesuffix("/bin/ewfd"))
               for step in readme_steps), exec_start
    assert "-m 0640 -g ewfd" in " ".join(s for s in readme_steps if "/etc/ewfd/" in s)


@pytest.mark.parametrize("topic", [
    r"ReadWritePaths",                     # the systemd caveat
    r"logrotate",                          # or why journald needs none
    r"not_before",                         # delayed start by SQL
    r"INSERT OR IGNORE INTO jobs \(uuid",  # dedupe with your own uuid
    r"_EWFD_COMPLETE=",                    # shell completion
    r"control\.enqueue\(",                 # the Python enqueue helper
    r"ewfd init",
])
def test_existing_features_are_documented(topic: str) -> None:
    docs = README + (ROOT / "docs" / "guide.md").read_text() + (
        ROOT / "docs" / "ctl.md").read_text()
    assert re.search(topic, docs), topic


@pytest.mark.timeout(60)
def test_shell_completion_works_as_documented() -> None:
    env = {**os.environ, "_EWFD_COMPLETE": "bash_source"}
    done = subprocess.run([sys.executable, "-c", "from ewfd.cli import main\n"
                           "main(prog_name='ewfd')"],     # as the installed `ewfd` script
                          env=env, capture_output=True, text=True, timeout=60)
    assert "_ewfd_completion" in done.stdout and "complete " in done.stdout
