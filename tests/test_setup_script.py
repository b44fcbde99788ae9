"""setup.sh, the README's first command: where it installs and what it says when the machine lacks something.

The real install (Debian's externally managed /usr/bin/python3, a fresh clone, no venv active) is a step of
.ci/run; these tests check the script's decisions without installing anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
# A plain interpreter (not a venv), as a user's distribution Python is.
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="setup.sh is a bash script")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A folder holding setup.sh and the project's pyproject.toml, as a fresh clone does."""
    folder = tmp_path / "clone"
    folder.mkdir()
    shutil.copy(PROJECT / "setup.sh", folder)
    shutil.copy(PROJECT / "pyproject.toml", folder)
    return folder


def setup_sh(folder: Path, *args: str, python: str | Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    env["PYTHON"] = str(python)
    return subprocess.run(["bash", str(folder / "setup.sh"), *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)


def fake_python(folder: Path, body: str) -> Path:
    """An executable standing in for an interpreter; `body` is bash, "$REAL" the real interpreter."""
    path = folder / "fakepython"
    path.write_text(f'#!/usr/bin/env bash\nREAL="{BASE_PYTHON}"\n{body}\n')
    path.chmod(0o755)
    return path


def test_outside_a_virtual_environment_it_plans_a_venv_in_the_checkout_and_dry_run_writes_nothing(checkout):
    before = sorted(p.name for p in checkout.iterdir())
    out = setup_sh(checkout, "--dry-run", python=BASE_PYTHON)
    assert out.returncode == 0, out.stderr
    assert "would create: .venv" in out.stdout
    assert "would run: .venv/bin/python -m pytest" in out.stdout
    assert sorted(p.name for p in checkout.iterdir()) == before


def test_inside_an_active_venv_it_installs_there_and_creates_no_venv(checkout, tmp_path):
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(tmp_path / "mine")], check=True)
    venv_python = tmp_path / "mine" / "bin" / "python"
    out = setup_sh(checkout, "--dry-run", "--no-tests", python=venv_python)
    assert out.returncode == 0, out.stderr
    assert "would use the active venv environment" in out.stdout and str(tmp_path / "mine") in out.stdout
    assert "would create" not in out.stdout and "would run" not in out.stdout


def test_an_existing_dot_venv_is_reused(checkout):
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(checkout / ".venv")], check=True)
    out = setup_sh(checkout, "--dry-run", python=BASE_PYTHON)
    assert out.returncode == 0 and "would use the existing .venv" in out.stdout, out.stdout + out.stderr


def test_a_python_without_venv_support_gets_the_apt_fix_in_one_line_and_exit_2(checkout, tmp_path):
    # Debian without python3-venv: `python3 -m venv` leaves a venv without pip and says ensurepip is missing.
    python = fake_python(tmp_path, 'if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"\n'
                                   '  echo "The virtual environment was not created successfully because ensurepip is '
                                   'not available." >&2; exit 1; fi\nexec "$REAL" "$@"')
    out = setup_sh(checkout, python=python)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and "sudo apt install python3-venv" in out.stderr
    assert not (checkout / ".venv").exists()  # no half-made venv for the next try to pick up


def test_a_python_older_than_3_11_is_refused_in_one_line_with_exit_2(checkout, tmp_path):
    python = fake_python(tmp_path, 'echo 3.10')
    out = setup_sh(checkout, python=python)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "Python >= 3.11" in out.stderr and "is 3.10" in out.stderr
    assert not (checkout / ".venv").exists()


def test_a_missing_interpreter_is_named_with_exit_2(checkout):
    out = setup_sh(checkout, python="python3-that-does-not-exist")
    assert out.returncode == 2 and "no 'python3-that-does-not-exist' on PATH" in out.stderr


def test_an_unknown_argument_is_refused_with_exit_2(checkout):
    out = setup_sh(checkout, "--no-test", python=BASE_PYTHON)
    assert out.returncode == 2 and "unknown argument '--no-test'" in out.stderr
