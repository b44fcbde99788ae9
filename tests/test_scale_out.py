"""Scale-out on Dask: same records as a serial run, a killed worker loses nothing, parallel tuning
without duplicated trials, and the pieces (record-first retries, SLURM config, MLflow retries)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FIXTURE_ROOT, TINY_SYNTHETIC, files_under, write_sweep

from bench.cli import main
from bench.cluster import load_cluster_file
from bench.errors import BenchError
from bench.invocation import execute_sweep
from bench.records import iter_records, read_record, record_path, runs_dir
from bench.study import shares
from bench.sweep import load_sweep
from bench.tasks import RunContext, run_task, worker_tracking_uri
from bench.tracking import RetryingTracker

BENCH = [sys.executable, "-c", "from bench.cli import main; main()"]


def _by_key(results: Path, sweep: str) -> dict[str, dict]:
    return {r["key"]: r for r in iter_records(results, [sweep])}


def _mlflow_children(results: Path, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    from bench.store import default_uri

    client = MlflowClient(tracking_uri=default_uri(results))
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("bench.role") != "invocation"]


# ----------------------------------------------------------------------------- end to end (slow: Dask workers)


@pytest.mark.slow
def test_two_workers_write_the_same_records_as_a_serial_run(tmp_path):
    path = write_sweep(tmp_path, f"""
        name: scaled
        seeds: [0, 1]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods:
          - cca
          - {{name: pgnn_con/no_gan, params: {{epochs: 2, D: 16}}}}
    """)
    serial, scaled = tmp_path / "serial", tmp_path / "scaled"
    execute_sweep(load_sweep(path, cache_root=serial / "cache"), serial)
    out = CliRunner().invoke(main, ["run", str(path), "--results", str(scaled), "--workers", "2"])
    assert out.exit_code == 0, out.output
    assert "[4/4 done, 0 running, 0 failed]" in out.output
    a, b = _by_key(serial, "scaled"), _by_key(scaled, "scaled")
    assert sorted(a) == sorted(b) and len(a) == 4
    for key in a:
        assert b[key]["status"] == "ok"
        assert b[key]["best_epoch"] == a[key]["best_epoch"]
        for name in ("map_i2t", "map_t2i", "map@100_i2t"):
            if name in a[key]["metrics"]:
                assert b[key]["metrics"][name] == pytest.approx(a[key]["metrics"][name], abs=1e-6), (key, name)
    # the seeds really differ, so equal figures are not an accident of a constant result
    gnn = sorted((r["spec"]["seed"], r["metrics"]["map_i2t"]) for r in b.values() if r["spec"]["method"] != "cca")
    assert gnn[0][1] != gnn[1][1]
    children = _mlflow_children(scaled, "scaled")
    assert sorted(r.data.tags["run_key"] for r in children if r.info.status == "FINISHED") == sorted(b)
    assert {r.info.run_id for r in children} == {rec["mlflow_run_id"] for rec in b.values()}
    again = CliRunner().invoke(main, ["run", str(path), "--results", str(scaled), "--workers", "2"])
    assert again.exit_code == 0 and "4 of 4 runs already finished" in again.output


def _worker_processes(bench_proc) -> list:
    """The Dask worker processes under a `bench run`: forked by its fork server (or spawned)."""
    found = []
    for p in bench_proc.children(recursive=True):
        cmd = " ".join(p.cmdline())
        if "forkserver" in cmd:
            found += p.children()
        elif "spawn_main" in cmd and "resource_tracker" not in cmd:
            found.append(p)
    return found


@pytest.mark.slow
def test_kill_9_of_a_worker_mid_sweep_loses_nothing(tmp_path):
    import psutil

    seeds = [0, 1, 2, 3]
    path = write_sweep(tmp_path, f"""
        name: killw
        seeds: {seeds}
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [{{name: fixture_sleepy, params: {{sleep_s: 3.0, started_marker: "{tmp_path / 'started'}"}}}}]
    """)
    results = tmp_path / "results"
    env = {**os.environ, "BENCH_PLUGIN_PATH": str(FIXTURE_ROOT)}
    log = tmp_path / "log.txt"
    with open(log, "w") as fh:
        proc = subprocess.Popen([*BENCH, "run", str(path), "--results", str(results), "--workers", "2"],
                                env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while (len(list(tmp_path.glob("started.seed*"))) < 2 and proc.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.05)
        assert proc.poll() is None, log.read_text()
        assert not files_under(runs_dir(results, "killw")), "runs finished before the kill; raise sleep_s"
        workers = _worker_processes(psutil.Process(proc.pid))
        assert len(workers) == 2, [p.cmdline() for p in workers]
        os.kill(workers[0].pid, signal.SIGKILL)
        rc = proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert rc == 0, text
    records = _by_key(results, "killw")
    assert sorted(r["spec"]["seed"] for r in records.values()) == seeds
    assert all(r["status"] == "ok" for r in records.values())
    assert len(list(runs_dir(results, "killw").glob("*.json"))) == len(seeds)
    children = _mlflow_children(results, "killw")
    finished = [r.data.tags["run_key"] for r in children if r.info.status == "FINISHED"]
    assert sorted(finished) == sorted(records)  # exactly one FINISHED MLflow run per key
    assert not [r for r in children if r.info.status == "RUNNING"]
    assert [r.info.status for r in children].count("KILLED") >= 1  # the run the kill interrupted


@pytest.mark.slow
def test_tune_with_two_workers_runs_distinct_trials_on_one_study(tmp_path):
    import optuna

    from bench.study import best_params_path, storage_for

    path = write_sweep(tmp_path, f"""
        name: ptune
        seeds: [0]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [cca]
    """)
    results = tmp_path / "results"
    for trials in (4, 2):
        out = CliRunner().invoke(main, ["tune", str(path), "--results", str(results), "--trials", str(trials),
                                        "--workers", "2"])
        assert out.exit_code == 0, out.output
    study = optuna.load_study(study_name="ptune:synthetic:cca", storage=storage_for(results, "ptune", None))
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(params) == 6
    assert len(set(params)) == 6  # no worker repeated another's (or an earlier invocation's) trial
    doc = json.loads(best_params_path(results, "ptune", "synthetic", "cca").read_text())
    assert doc["trials"] == 6 and doc["value"] == pytest.approx(study.best_value)


# ----------------------------------------------------------------------------- pieces (fast, in process)


def _ctx(sweep, results: Path, force: bool = False, started: str = "2000-01-01T00:00:00+00:00") -> RunContext:
    return RunContext(sweep=sweep.name, results=str(results), device=sweep.device, started=started, force=force)


def test_a_retried_task_returns_the_existing_record_instead_of_training_again(tmp_path, counting, monkeypatch):
    monkeypatch.setenv("BENCH_PLUGIN_PATH", "")
    path = write_sweep(tmp_path, f"""
        name: retry
        seeds: [0]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [coretest_counting]
    """)
    results = tmp_path / "results"
    sweep = load_sweep(path, cache_root=results / "cache")
    spec = sweep.specs[0]
    first = run_task(_ctx(sweep, results), spec)
    assert first["status"] == "ok" and not first["reused"] and len(counting.fits) == 1
    written = record_path(results, "retry", spec.key).read_text()
    second = run_task(_ctx(sweep, results), spec)  # what a Dask retry of a finished run does
    assert second["reused"] and len(counting.fits) == 1
    assert record_path(results, "retry", spec.key).read_text() == written
    # --force: a record from before this invocation is redone, one written during it is kept
    rec = read_record(record_path(results, "retry", spec.key))
    forced = run_task(_ctx(sweep, results, force=True, started="2999-01-01T00:00:00+00:00"), spec)
    assert not forced["reused"] and len(counting.fits) == 2
    kept = run_task(_ctx(sweep, results, force=True, started=rec["started"]), spec)
    assert kept["reused"] and len(counting.fits) == 2


@pytest.mark.parametrize("trials,workers,expected", [(4, 2, [2, 2]), (5, 2, [3, 2]), (1, 4, [1]), (7, 3, [3, 2, 2])])
def test_trials_are_shared_exactly_between_workers(trials, workers, expected):
    assert shares(trials, workers) == expected


def _cluster_file(tmp_path, text: str) -> Path:
    path = tmp_path / "slurm.yaml"
    path.write_text(text)
    return path


def test_slurm_cluster_file_is_parsed_and_gpus_become_worker_resources(tmp_path):
    cfg = load_cluster_file(_cluster_file(tmp_path, """
slurm: {cores: 8, memory: 32GB, queue: gpu, walltime: "04:00:00", job_extra_directives: ["--gres=gpu:1"]}
jobs: 3
gpus_per_job: 1
"""))
    assert cfg["jobs"] == 3 and cfg["slurm"]["queue"] == "gpu"
    assert cfg["slurm"]["worker_extra_args"] == ["--resources", "GPU=1"]


@pytest.mark.parametrize("text,needle", [
    ("slurm: {memory: 4GB}", "slurm.cores is required"),
    ("slurm: {cores: 2, memory: 4GB, qeue: gpu}", "slurm.qeue is not a SLURMCluster argument"),
    ("slurm: {cores: 2, memory: 4GB}\njob: 2", "unknown key(s) ['job']"),
    ("slurm: {cores: 2, memory: 4GB}\njobs: 0", "jobs must be an integer >= 1"),
    ("- cores: 2", "expected a mapping with a 'slurm:' mapping"),
    ("slurm: [unclosed", "invalid YAML"),
])
def test_bad_slurm_cluster_files_name_the_problem(tmp_path, text, needle):
    with pytest.raises(BenchError, match=None) as err:
        load_cluster_file(_cluster_file(tmp_path, text))
    assert needle in str(err.value)


def test_slurm_job_script_from_the_cluster_file(tmp_path):
    pytest.importorskip("dask_jobqueue", reason="dask-jobqueue not installed (pip install 'bench[slurm]')")
    from dask_jobqueue import SLURMCluster

    cfg = load_cluster_file(_cluster_file(tmp_path, """
slurm: {cores: 4, memory: 8GB, queue: gpu, job_extra_directives: ["--gres=gpu:1"]}
gpus_per_job: 1
"""))
    with SLURMCluster(**cfg["slurm"], scheduler_options={"dashboard_address": None}) as cluster:
        script = cluster.job_script()
    assert "#SBATCH -p gpu" in script and "#SBATCH --gres=gpu:1" in script
    assert "--resources GPU=1" in script


def test_cli_rejects_two_cluster_sources_and_a_missing_cluster_file(tmp_path):
    path = write_sweep(tmp_path, f"""
        seeds: [0]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [cca]
    """)
    results = tmp_path / "results"
    out = CliRunner().invoke(main, ["run", str(path), "--results", str(results), "--workers", "2",
                                    "--scheduler", "tcp://127.0.0.1:1"])
    assert out.exit_code == 2 and "exclude each other" in out.output
    out = CliRunner().invoke(main, ["run", str(path), "--results", str(results), "--cluster",
                                    str(tmp_path / "nope.yaml")])
    assert out.exit_code == 2 and "no such file" in out.output
    assert not files_under(results)  # nothing written: not even the MLflow store or the sweep lock


class _Flaky:
    """A tracker whose calls fail `fails` times with `message` before succeeding."""

    def __init__(self, fails: int, message: str) -> None:
        self.fails, self.message, self.calls = fails, message, 0

    def log_metrics(self, run_id, metrics, step=None):
        self.calls += 1
        if self.calls <= self.fails:
            raise RuntimeError(self.message)
        return "logged"


def test_tracking_calls_are_retried_on_a_busy_store_only():
    busy = _Flaky(3, "(sqlite3.OperationalError) database is locked")
    assert RetryingTracker(busy, base_delay=0.001).log_metrics("r", {"a": 1.0}) == "logged"
    assert busy.calls == 4
    broken = _Flaky(1, "no such table: runs")
    with pytest.raises(RuntimeError, match="no such table"):
        RetryingTracker(broken, base_delay=0.001).log_metrics("r", {"a": 1.0})
    assert broken.calls == 1


def test_workers_open_the_sqlite_store_with_a_busy_timeout():
    assert worker_tracking_uri("sqlite:////x/mlflow.db") == "sqlite:////x/mlflow.db?timeout=60"
    assert worker_tracking_uri("http://mlflow:5000") == "http://mlflow:5000"
    assert worker_tracking_uri("sqlite:////x/m.db?timeout=5") == "sqlite:////x/m.db?timeout=5"


def test_a_worker_loads_and_splits_a_dataset_once_for_all_its_runs(tmp_path, counting, monkeypatch):
    import bench.tasks

    monkeypatch.setenv("BENCH_PLUGIN_PATH", "")
    calls = {"load": 0, "split": 0}
    real_load, real_split = bench.tasks.load_dataset, bench.tasks.get_split

    def load(*a, **k):
        calls["load"] += 1
        return real_load(*a, **k)

    def split(*a, **k):
        calls["split"] += 1
        return real_split(*a, **k)

    monkeypatch.setattr(bench.tasks, "load_dataset", load)
    monkeypatch.setattr(bench.tasks, "get_split", split)
    path = write_sweep(tmp_path, f"""
        name: once
        seeds: [0, 1, 2]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [coretest_counting]
    """)
    results = tmp_path / "results"
    sweep = load_sweep(path, cache_root=results / "cache")
    ctx = _ctx(sweep, results, started="2001-01-01T00:00:00+00:00")
    outs = [run_task(ctx, spec) for spec in sweep.specs]
    assert [o["status"] for o in outs] == ["ok"] * 3 and len(counting.fits) == 3
    assert calls == {"load": 1, "split": 1}
    # the split came from (and went to) the cache on disk, the single source of truth
    assert list((results / "cache").rglob("*.npz"))
    run_task(_ctx(sweep, results, force=True, started="2999-01-01T00:00:00+00:00"), sweep.specs[0])
    assert calls == {"load": 2, "split": 2}  # a new invocation starts with fresh caches


def _hammer(uri: str, n_runs: int) -> list[str]:
    """One writer process: open the store as a worker does and log runs, metrics and params fast."""
    from bench.tasks import worker_tracking_uri
    from bench.tracking import MlflowTracker, RetryingTracker

    tracker = RetryingTracker(MlflowTracker(worker_tracking_uri(uri), "hammer"))
    ids = []
    for i in range(n_runs):
        run_id = tracker.start_child(f"run {i}", {"i": i, "pid": os.getpid()}, {"run_key": f"{os.getpid()}-{i}"})
        for step in range(5):
            tracker.log_metrics(run_id, {"loss": 1.0 / (step + 1), "val_map": 0.1 * step}, step)
        tracker.end_child(run_id, "FINISHED")
        ids.append(run_id)
    return ids


@pytest.mark.slow
def test_the_embedded_sqlite_store_survives_four_concurrent_writers(tmp_path):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from mlflow.tracking import MlflowClient

    from bench.store import default_uri
    from bench.tracking import MlflowTracker

    results = tmp_path / "results"
    results.mkdir()
    uri = default_uri(results)
    MlflowTracker(uri, "hammer", results / "mlartifacts")  # the submitting process creates store and experiment
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        ids = [i for chunk in pool.map(_hammer, [uri] * 4, [6] * 4) for i in chunk]
    assert len(set(ids)) == 24
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("hammer").experiment_id], max_results=100)
    assert len(runs) == 24 and all(r.info.status == "FINISHED" for r in runs)
    assert all(len(client.get_metric_history(r.info.run_id, "loss")) == 5 for r in runs)


# ----------------------------------------------------------------------------- glibc malloc in workers

_FAULTS = """
import os, resource, sys
import numpy as np
from bench.malloc import relax_malloc_trim
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(40):  # 40 x 1 MiB: mmapped each time under a small fixed threshold (under 2 MiB, so
        a = np.ones(1 << 17); del a  # transparent huge pages cannot serve it with a single fault)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
print(faults(), relax_malloc_trim(), faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_a_small_malloc_trim_threshold_from_dask_is_undone_in_the_worker_process():
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    env.pop("BENCH_MALLOC_TRIM", None)
    out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, check=True)
    before, changed, after = out.stdout.split()
    assert changed == "True"
    assert int(before) > 40 * 128  # each 1 MiB array faulted its 256 pages in again
    assert int(after) < int(before) / 20  # reused from the heap: no new pages
    env["BENCH_MALLOC_TRIM"] = "keep"
    out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[1] == "False"


@pytest.mark.slow
def test_local_workers_do_not_inherit_dasks_malloc_trim_threshold(monkeypatch):
    from bench.cluster import ClusterOptions, open_client

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with open_client(ClusterOptions(workers=1), "cpu", echo=lambda _l: None) as client:
        seen = client.submit(os.environ.get, "MALLOC_TRIM_THRESHOLD_", pure=False).result()
    assert seen is None


@pytest.mark.slow
def test_local_workers_and_torch_keep_their_scratch_space_inside_the_results_folder(tmp_path):
    path = write_sweep(tmp_path, f"""
        name: scratch
        seeds: [0]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [cca]
    """)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    out = subprocess.run([*BENCH, "run", str(path), "--results", str(tmp_path / "res"), "--no-mlflow",
                          "--workers", "1"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not list(tmp.iterdir())  # neither Dask's scratch space nor torch's compile cache
    assert (tmp_path / "res" / "cache" / "dask" / "dask-scratch-space").is_dir()


def test_the_cluster_starts_while_the_mlflow_store_is_opened(tmp_path, monkeypatch):
    import bench.cluster as cluster
    import bench.invocation as invocation

    events: list[tuple[str, float]] = []
    real_open_tracker = invocation.open_tracker

    def slow_open_tracker(*args, **kwargs):
        events.append(("tracker begins", time.monotonic()))
        time.sleep(0.5)
        out = real_open_tracker(*args, **kwargs)
        events.append(("tracker ends", time.monotonic()))
        return out

    def fake_start(opts, device, echo=print, local_directory=None):
        events.append(("cluster begins", time.monotonic()))
        raise BenchError("no cluster in this test")

    monkeypatch.setattr(invocation, "open_tracker", slow_open_tracker)
    monkeypatch.setattr(cluster, "start_client", fake_start)
    path = write_sweep(tmp_path, f"""
        name: overlap
        seeds: [0]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [cca]
    """)
    res = CliRunner().invoke(main, ["run", str(path), "--results", str(tmp_path / "res"), "--workers", "2"])
    assert res.exit_code == 2 and "no cluster in this test" in res.output
    when = dict((name, t) for name, t in events)
    assert when["cluster begins"] < when["tracker ends"]  # started before the store was ready
    assert not read_record(record_path(tmp_path / "res", "overlap", load_sweep(path).specs[0].key))
