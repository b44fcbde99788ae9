"""A real database where users put one: PostgreSQL (Debian's package) on 127.0.0.1 in a temp dir,
an Optuna study with `--storage postgresql://...` from two Dask workers, and an MLflow server
whose backend store is that PostgreSQL receiving a sweep from two workers; both are read back.

Run by `nox -s integration` (and CI); deselected from the default run (`-m "not integration"`).
Skipped, with the reason, when the PostgreSQL binaries or psycopg (3) are absent.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY_SYNTHETIC, write_sweep

pytestmark = pytest.mark.integration


def _pg_bindir() -> Path | None:
    """Folder holding initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL server: yields (host, port, user); databases `optuna` and `mlflow` exist."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install -y postgresql")
    psycopg = pytest.importorskip("psycopg", reason="psycopg missing: pip install 'bench[postgres]'")
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the package's `postgres` user
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"] if shutil.which("runuser") else None
        if prefix is None:
            shutil.rmtree(folder)
            pytest.skip("running as root without `runuser` to start PostgreSQL as 'postgres'")
    port, data, log = _free_port(), folder / "data", folder / "server.log"
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "bench", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True)
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                    "-o", f"-h 127.0.0.1 -p {port} -k {folder} -F", "start"], check=True, capture_output=True)
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="bench", dbname="postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE optuna")
            conn.execute("CREATE DATABASE mlflow")
        yield "127.0.0.1", port, "bench"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _query(postgres, dbname: str, sql: str) -> list[tuple]:
    import psycopg

    host, port, user = postgres
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    """`mlflow server` with its backend store in the PostgreSQL database `mlflow`; yields its URL."""
    host, port, user = postgres
    http_port = _free_port()
    folder = tmp_path_factory.mktemp("mlflow-server")
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                             f"postgresql://{user}@{host}:{port}/mlflow", "--default-artifact-root",
                             (folder / "artifacts").as_uri(), "--host", "127.0.0.1", "--port", str(http_port),
                             "--workers", "1"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{(folder / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _sweep(tmp_path: Path, name: str) -> Path:
    return write_sweep(tmp_path, f"""
        name: {name}
        seeds: [0, 1]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [cca, label_regression]
    """, name=name)


def test_a_study_on_postgresql_from_two_workers_is_read_back(postgres, tmp_path):
    import optuna

    from bench.cli import main
    from bench.study import best_params_path

    host, port, user = postgres
    url = f"postgresql://{user}@{host}:{port}/optuna"
    path, results = _sweep(tmp_path, "pgtune"), tmp_path / "results"
    out = CliRunner().invoke(main, ["tune", str(path), "--results", str(results), "--trials", "4",
                                    "--workers", "2", "--storage", url])
    assert out.exit_code == 0, out.output
    study = optuna.load_study(study_name="pgtune:synthetic:cca", storage=url)
    assert len(study.trials) == 4
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 4
    assert not (results / "pgtune" / "tune" / "optuna.journal").exists()  # the study lives in PostgreSQL only
    rows = _query(postgres, "optuna", "SELECT s.study_name, count(t.trial_id) FROM studies s JOIN trials t "
                                      "ON t.study_id = s.study_id GROUP BY s.study_name ORDER BY s.study_name")
    assert rows == [("pgtune:synthetic:cca", 4), ("pgtune:synthetic:label_regression", 4)]
    assert best_params_path(results, "pgtune", "synthetic", "cca").exists()


def test_runs_from_two_workers_reach_an_mlflow_server_backed_by_postgresql(postgres, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    from bench.cli import main
    from bench.records import iter_records

    path, results = _sweep(tmp_path, "pgrun"), tmp_path / "results"
    out = CliRunner().invoke(main, ["run", str(path), "--results", str(results), "--workers", "2",
                                    "--tracking-uri", mlflow_server])
    assert out.exit_code == 0, out.output
    records = {r["key"]: r for r in iter_records(results, ["pgrun"])}
    assert len(records) == 4
    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("pgrun")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    children = {r.data.tags["run_key"]: r for r in runs if r.data.tags.get("bench.role") != "invocation"}
    assert sorted(children) == sorted(records)
    assert all(r.info.status == "FINISHED" for r in children.values())
    for key, run in children.items():
        assert run.data.metrics["test/map_i2t"] == pytest.approx(records[key]["metrics"]["map_i2t"])
    # and the rows are in PostgreSQL, not in some local store
    rows = _query(postgres, "mlflow", "SELECT r.status, count(*) FROM runs r JOIN experiments e ON "
                                      "e.experiment_id = r.experiment_id WHERE e.name = 'pgrun' GROUP BY r.status")
    assert dict(rows) == {"FINISHED": 5}  # four runs and the invocation's parent run
    assert not (results / "mlflow.db").exists()
