"""--threads auto: each run in the bench process trains with the cores idle when it starts, and the
record says how many; a fixed --threads N is kept; Dask workers use one thread each."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import TINY_SYNTHETIC, write_sweep

import bench.tasks
import bench.threads as threads
from bench.cli import main
from bench.records import iter_records


def _stat(idle: int, total: int) -> str:
    # user nice system idle iowait irq softirq steal: `idle` of `total` jiffies idle
    return f"cpu  {total - idle} 0 0 {idle} 0 0 0 0 0 0\n"


@pytest.mark.parametrize("idle_share,cores,expected", [(1.0, 2, 2), (0.5, 2, 1), (0.02, 2, 1), (0.74, 8, 6),
                                                       (0.95, 8, 7)])
def test_auto_threads_are_the_idle_cores_over_a_short_sample(monkeypatch, idle_share, cores, expected):
    samples = iter([(0, 0), (int(1000 * idle_share), 1000)])
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    assert threads.auto_threads(sample_s=0) == expected


def test_auto_threads_fall_back_to_the_load_average_without_proc_stat(monkeypatch):
    monkeypatch.setattr(threads, "_cpu_times", lambda: None)
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (2.9, 0.0, 0.0))
    assert threads.auto_threads(sample_s=0) == 1
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.1, 0.0, 0.0))
    assert threads.auto_threads(sample_s=0) == 4


def test_the_proc_stat_reading_parses_idle_and_iowait(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 2 3 40 5 0 0 0 0 0\ncpu0 1 1 1 1 1 1 1 1\n")
    monkeypatch.setattr(threads, "Path", lambda _p: stat)
    assert threads._cpu_times() == (45, 60)


def _sweep(tmp_path):
    return write_sweep(tmp_path, f"""
        name: th
        seeds: [0, 1]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [cca]
    """)


def test_each_run_under_auto_uses_the_idle_cores_of_its_start_and_records_them(tmp_path, monkeypatch):
    counts = iter([1, 2])
    monkeypatch.setattr(bench.tasks, "auto_threads", lambda: next(counts))
    results = tmp_path / "results"
    res = CliRunner().invoke(main, ["run", str(_sweep(tmp_path)), "--results", str(results), "--no-mlflow",
                                    "--no-embeddings"])
    assert res.exit_code == 0, res.output
    by_seed = {r["spec"]["seed"]: r["environment"]["torch_threads"] for r in iter_records(results, ["th"])}
    assert by_seed == {0: 1, 1: 2}
    report = CliRunner().invoke(main, ["report", "th", "--results", str(results)]).output
    assert "different torch thread counts" in report and "(1, 2 threads)" in report


def test_a_fixed_thread_count_is_used_for_every_run(tmp_path, monkeypatch):
    monkeypatch.setattr(bench.tasks, "auto_threads", lambda: pytest.fail("auto must not be asked"))
    results = tmp_path / "results"
    res = CliRunner().invoke(main, ["run", str(_sweep(tmp_path)), "--results", str(results), "--no-mlflow",
                                    "--no-embeddings", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert {r["environment"]["torch_threads"] for r in iter_records(results, ["th"])} == {1}


@pytest.mark.parametrize("value", ["0", "-2", "many", "1e9", "99999"])
def test_a_bad_thread_count_is_one_line_and_exit_2(tmp_path, value):
    res = CliRunner().invoke(main, ["run", str(_sweep(tmp_path)), "--results", str(tmp_path / "r"),
                                    "--threads", value])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1 and "--threads" in res.stderr
    assert not (tmp_path / "r").exists()
