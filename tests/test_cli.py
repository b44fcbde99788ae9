"""The command line: bad input is one or two lines and writes nothing; list, dry-run, run, report."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_SYNTHETIC, files_under, write_sweep
from filelock import FileLock

from bench.cli import main

BAD = {
    "unknown method": "datasets: [synthetic]\nmethods: [ccca]\n",
    "missing required key": "datasets: [synthetic]\n",
    "negative epoch count": "datasets: [synthetic]\nmethods: [{name: coretest_counting, params: {epochs: -1}}]\n",
    "broken yaml": "datasets: [synthetic]\nmethods: [cca\nseeds: [0]\n",
    "empty grid": "datasets: [synthetic]\nmethods: [{name: cca, grid: {dim: []}}]\n",
    "unknown top-level key": "datasets: [synthetic]\nmethods: [cca]\nseed: [1]\n",
}


def _invoke(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env)


def _good_sweep(tmp_path, methods="[coretest_counting]", seeds="[0, 1]"):
    return write_sweep(tmp_path, f"""
        name: good
        seeds: {seeds}
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: {methods}
    """)


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_sweep_exits_non_zero_with_a_short_message_and_writes_nothing(tmp_path, case):
    path = write_sweep(tmp_path, BAD[case])
    results = tmp_path / "results"
    result = _invoke("run", str(path), "--results", str(results))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith(f"error: {path}")
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert not results.exists()


def test_a_bad_sweep_writes_nothing_into_the_bench_results_folder(tmp_path):
    path = write_sweep(tmp_path, BAD["unknown method"])
    results = tmp_path / "env-results"
    results.mkdir()
    result = _invoke("run", str(path), env={"BENCH_RESULTS": str(results)})
    assert result.exit_code == 2
    assert files_under(results) == [] and list(results.iterdir()) == []


def test_a_bad_sweep_in_a_real_process_prints_no_traceback(tmp_path):
    path = write_sweep(tmp_path, BAD["unknown method"])
    out = subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", "run", str(path),
                          "--results", str(tmp_path / "results")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()  # one line; the suggestions grow with the registry
    assert line.startswith(f"error: {path}: methods.0.name: unknown method 'ccca' (did you mean cca")
    assert line.endswith("?); `bench list methods` shows them all")
    assert not (tmp_path / "results").exists()


def test_list_methods_shows_the_baselines_with_their_descriptions():
    result = _invoke("list", "methods")
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert "regularised linear CCA" in lines["cca"]
    assert "ridge regression" in lines["label_regression"]


def test_list_methods_shows_what_a_variant_fixes():
    result = _invoke("list", "methods", "coretest_layered*")
    assert result.output.splitlines()[0].startswith("coretest_layered ")
    assert "[fixes fixed_by_variant=4]" in result.output.splitlines()[1]
    assert len(result.output.splitlines()) == 2


def test_list_datasets_shows_synthetic():
    result = _invoke("list", "datasets")
    assert result.exit_code == 0 and "synthetic" in result.output.split()


def test_a_dry_run_lists_every_run_and_writes_nothing(tmp_path, counting):
    results = tmp_path / "results"
    result = _invoke("run", str(_good_sweep(tmp_path)), "--results", str(results), "--dry-run")
    assert result.exit_code == 0
    runs = [line for line in result.output.splitlines()[:-1] if not line.startswith(" ")]  # not the params lines
    assert [line.split()[0] for line in runs] == ["todo", "todo"]
    assert result.output.splitlines()[-1].startswith("2 of 2 runs to do")
    assert not results.exists()
    assert counting.fits == []


def test_a_dry_run_after_a_run_marks_the_runs_done(tmp_path, counting):
    results = tmp_path / "results"
    path = _good_sweep(tmp_path)
    _invoke("run", str(path), "--results", str(results), "--no-mlflow")
    result = _invoke("run", str(path), "--results", str(results), "--dry-run")
    runs = [line for line in result.output.splitlines()[:-1] if not line.startswith(" ")]  # not the params lines
    assert [line.split()[0] for line in runs] == ["done", "done"]
    assert result.output.splitlines()[-1].startswith("0 of 2 runs to do")


def test_running_a_sweep_twice_trains_nothing_the_second_time_and_exits_zero(tmp_path, counting):
    results = tmp_path / "results"
    path = _good_sweep(tmp_path)
    first = _invoke("run", str(path), "--no-mlflow", env={"BENCH_RESULTS": str(results)})
    assert first.exit_code == 0, first.output
    assert len(list((results / "good" / "runs").glob("*.json"))) == 2
    second = _invoke("run", str(path), "--no-mlflow", env={"BENCH_RESULTS": str(results)})
    assert second.exit_code == 0
    assert "0 ran now" in second.output and "2 already finished" in second.output
    assert len(counting.fits) == 2


def test_force_reruns_from_the_command_line(tmp_path, counting):
    results = tmp_path / "results"
    path = _good_sweep(tmp_path)
    _invoke("run", str(path), "--results", str(results), "--no-mlflow")
    result = _invoke("run", str(path), "--results", str(results), "--no-mlflow", "--force")
    assert result.exit_code == 0 and "2 ran now (2 ok" in result.output
    assert len(counting.fits) == 4


def test_a_failed_run_makes_the_exit_code_one(tmp_path, failing):
    results = tmp_path / "results"
    result = _invoke("run", str(_good_sweep(tmp_path, methods="[coretest_failing]")), "--results", str(results),
                     "--no-mlflow")
    assert result.exit_code == 1
    assert "1 run(s) failed" in result.stderr
    assert "FAILED synthetic | coretest_failing | seed 1: ValueError: planted failure for seed 1" in result.output


def test_a_second_invocation_on_a_locked_sweep_is_refused(tmp_path, counting):
    results = tmp_path / "results"
    (results / "good").mkdir(parents=True)
    with FileLock(str(results / "good" / ".lock")):
        result = _invoke("run", str(_good_sweep(tmp_path)), "--results", str(results), "--no-mlflow")
    assert result.exit_code == 2 and "already running sweep 'good'" in result.stderr
    assert counting.fits == []


def test_report_with_no_results_is_a_clear_error(tmp_path):
    result = _invoke("report", "--results", str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no finished runs found")
    assert "Traceback" not in result.output


def test_report_of_an_unknown_sweep_is_a_clear_error(tmp_path):
    result = _invoke("report", "nosuchsweep", "--results", str(tmp_path))
    assert result.exit_code == 2 and "no sweep 'nosuchsweep'" in result.stderr


def test_report_after_a_run_prints_a_table_of_every_method(tmp_path):
    results = tmp_path / "results"
    path = _good_sweep(tmp_path, methods="[{name: cca, params: {dim: 4}}, label_regression]")
    assert _invoke("run", str(path), "--results", str(results), "--no-mlflow").exit_code == 0
    result = _invoke("report", "--results", str(results), "--layout", "long")
    assert result.exit_code == 0
    rows = [line for line in result.output.splitlines() if line.startswith("| synthetic")]
    assert [r.split("|")[2].strip() for r in rows] == ["cca", "label_regression"]
    assert all(r.rstrip(" |").endswith("2") for r in rows)  # two seeds each


def test_a_dry_run_with_force_lists_finished_runs_as_to_do(tmp_path, counting):
    results = tmp_path / "results"
    path = _good_sweep(tmp_path)
    _invoke("run", str(path), "--results", str(results), "--no-mlflow")
    result = _invoke("run", str(path), "--results", str(results), "--dry-run", "--force")
    assert result.output.splitlines()[-1].startswith("2 of 2 runs to do")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_cuda_is_a_one_line_error(tmp_path, counting):
    result = _invoke("run", str(_good_sweep(tmp_path)), "--results", str(tmp_path / "results"), "--no-mlflow",
                     "--device", "cuda")
    assert result.exit_code == 2
    assert "cuda" in result.stderr.lower() and "Traceback" not in result.output


def test_report_given_a_sweep_file_covers_only_the_runs_that_file_defines(tmp_path, counting):
    results = tmp_path / "results"
    wide = _good_sweep(tmp_path, methods="[{name: coretest_counting, grid: {dim: [2, 3]}}]")
    assert _invoke("run", str(wide), "--results", str(results), "--no-mlflow").exit_code == 0
    narrow = _good_sweep(tmp_path, methods="[{name: coretest_counting, grid: {dim: [2]}}]")
    result = _invoke("report", str(narrow), "--results", str(results), "--layout", "long")
    assert result.exit_code == 0
    methods = [line.split("|")[2].strip() for line in result.output.splitlines() if line.startswith("| synthetic")]
    assert methods == ["coretest_counting dim=2"]


def test_ui_without_an_mlflow_store_is_a_clear_error(tmp_path):
    result = _invoke("ui", "--results", str(tmp_path))
    assert result.exit_code == 2 and "no MLflow store" in result.stderr


def test_the_resume_line_counts_runs_of_unavailable_datasets_apart(tmp_path, counting):
    results = tmp_path / "results"
    path = write_sweep(tmp_path, f"""
        name: partly
        seeds: [0]
        datasets:
          - {{name: synthetic, params: {TINY_SYNTHETIC}}}
          - {{name: mirflickr, optional: true, params: {{root: {tmp_path / 'absent'}}}}}
        methods: [coretest_counting]
    """)
    assert _invoke("run", str(path), "--results", str(results), "--no-mlflow").exit_code == 0
    again = _invoke("run", str(path), "--results", str(results), "--no-mlflow")
    assert again.exit_code == 0, again.output
    # "1 of 2 already finished" alone reads as one run still to do; the other one has no data here
    assert "1 of 2 runs already finished; skipping them (--force reruns); 1 more skipped with their " \
           "unavailable datasets" in again.output
    assert "sweep partly: 2 runs; 0 ran now (0 ok, 0 failed), 1 already finished, 1 skipped;" in again.output
