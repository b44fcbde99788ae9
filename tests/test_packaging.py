"""bench works wherever it is installed: a wheel carries the built-in plugins, and a second copy of the
project next to an editable install runs without clashes (issue 8)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a wheel and installs it, then runs the smoke sweep: ~30-60 s

PROJECT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", ".venv", "results", "build", "dist", "*.egg-info", "__pycache__", ".nox",
                              ".pytest_cache", ".ruff_cache", ".benchmarks", "mlruns")


def _run(cmd, cwd, timeout=600):
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout}\n{out.stderr}"
    return out


def _copy(dst: Path) -> Path:
    shutil.copytree(PROJECT, dst, ignore=SKIP)
    return dst


def _venv(folder: Path) -> Path:
    """A fresh venv that sees this interpreter's packages (torch, mlflow, ...) but installs its own bench."""
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", folder], cwd=folder.parent)
    if sys.prefix != sys.base_prefix:
        # Run from a venv (setup.sh's .venv), --system-site-packages reaches the base interpreter's packages,
        # not this venv's: list this venv's site folders as plain paths (its .pth files, such as the editable
        # bench's finder, are not processed, so the new venv's own bench stays the one imported).
        site = next((folder / "lib").glob("python3*/site-packages"))
        (site / "zz_parent_venv.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
    return folder / "bin"


def _pip(venv_bin: Path, *args, cwd):
    return _run([sys.executable, "-m", "pip", "--python", venv_bin / "python", "--disable-pip-version-check",
                 "install", "--no-deps", "--quiet", *args], cwd=cwd)


def _where(venv_bin: Path, cwd: Path) -> dict[str, str]:
    """The files of `bench` and of the built-in plugin cca that this interpreter uses, run from `cwd`."""
    script = ("import bench, sys; from bench.registry import method_entries; method_entries(); "
              "print(bench.__file__); print(sys.modules['_bench_plugins.methods.cca'].__file__)")
    out = _run([venv_bin / "python", "-c", script], cwd=cwd)
    assert out.stderr == "", out.stderr
    bench_file, cca_file = out.stdout.split()
    return {"bench": Path(bench_file).resolve(), "cca": Path(cca_file).resolve()}


def test_a_wheel_in_a_fresh_venv_carries_the_plugins_and_runs_the_smoke_sweep_from_an_empty_folder(tmp_path):
    src = _copy(tmp_path / "src")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
          "-w", tmp_path / "dist", src], cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("bench-*.whl")
    venv = _venv(tmp_path / "venv")
    _pip(venv, wheel, cwd=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    site = next((tmp_path / "venv" / "lib").glob("python3*/site-packages")).resolve()
    where = _where(venv, empty)
    assert where["bench"].is_relative_to(site) and where["cca"].is_relative_to(site), where
    assert not (site / "methods").exists() and not (site / "datasets").exists()  # no top-level names claimed

    listed = _run([venv / "bench", "list", "methods"], cwd=empty)
    names = {line.split()[0]: line for line in listed.stdout.splitlines()}
    from bench.registry import method_entries, origin_of

    builtin = [n for n, e in method_entries().items() if origin_of("method", e.family).kind == "built-in"]
    for name in builtin:  # every method of the source tree ships in the wheel
        assert names[name].endswith("(built-in)"), listed.stdout

    ran = _run([venv / "bench", "run", "smoke"], cwd=empty)
    assert "3 runs; 3 ran now (3 ok, 0 failed)" in ran.stdout, ran.stdout
    report = _run([venv / "bench", "report", "smoke", "--layout", "long"], cwd=empty).stdout
    assert {"cca", "label_regression", "pgnn_con"} <= {row.split("|")[2].strip() for row in report.splitlines()
                                                        if row.startswith("| synthetic")}
    assert sorted(p.name for p in empty.iterdir()) == ["results"]  # nothing written outside the results
    # run keys hash the plugins' sources, not where they are installed: the checkout sees the wheel's runs as done
    planned = _run([sys.executable, "-c", "from bench.cli import main; main()", "run", "smoke", "--dry-run",
                    "--results", empty / "results"], cwd=tmp_path)
    assert "0 of 3 runs to do" in planned.stdout and "3 done" in planned.stdout, planned.stdout


def test_a_second_copy_of_the_project_runs_while_another_copy_is_installed_editable(tmp_path):
    installed, other = _copy(tmp_path / "installed"), _copy(tmp_path / "other")
    venv = _venv(tmp_path / "venv")
    _pip(venv, "-e", installed, cwd=tmp_path)
    # the console script runs the installed copy, with the installed copy's plugins
    listed = _run([venv / "bench", "list", "methods"], cwd=other)
    assert listed.stderr == "" and "cca" in listed.stdout.split()  # no 'registered twice', no override notice
    planned = _run([venv / "bench", "run", "sweeps/smoke.yaml", "--dry-run"], cwd=other)
    assert planned.stderr == "" and "3 of 3 runs to do" in planned.stdout
    assert _where(venv, tmp_path) == {"bench": installed / "bench" / "__init__.py",
                                      "cca": installed / "methods" / "cca.py"}
    # `python -c` inside the other copy imports that copy's bench: its plugins come along, not the installed ones
    assert _where(venv, other) == {"bench": other / "bench" / "__init__.py", "cca": other / "methods" / "cca.py"}
