"""The bad-input corpus of issue 20, command-line cases: each input ends with exit code 2, one line
on stderr naming what is wrong (`error: ...`, or `problem: ...` for `bench data`), no traceback, no
hang (every case runs under a deadline and every network check has a timeout), and nothing written
under the results folder (nor, for `--results ''`, in the current folder).

Cases are grouped by the class of the issue they belong to (numbers, files, command-line bombs,
addresses and storage, `bench ui`, `bench data`, results folders, silent acceptance, smaller ones).
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY_SYNTHETIC, write_sweep
from test_bad_inputs import MAX_LINE, snapshot

from bench.cli import main

BIG = "9" * 400
DEEP = "[" * 900 + "]" * 900
BOMB = ("[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], "
        "&d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d], "
        "&f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e], &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]]")  # 10**7 values


@dataclass
class Case:
    """One command line, where its results folder is, and what its one line must say."""

    args: list[str]
    results: Path
    needle: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    prefix: str = "error: "
    cwd: Path | None = None


def _good(tmp_path: Path) -> Path:
    return write_sweep(tmp_path, f"""
        name: good
        seeds: [0]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [cca, label_regression]
    """)


def run(*extra: str, needle: str | None = None, command: str = "run"):
    """A case on the good sweep with `extra` arguments (DIR and FILE become a folder and a file of the test)."""
    def make(tmp_path: Path) -> Case:
        (tmp_path / "adir").mkdir(exist_ok=True)
        (tmp_path / "afile.txt").write_text("not a database\n")
        args = [a.replace("DIR", str(tmp_path / "adir")).replace("FILE", str(tmp_path / "afile.txt")) for a in extra]
        results = tmp_path / "results"
        return Case([command, str(_good(tmp_path)), "--results", str(results), *args], results, needle)
    return make


def tune(*extra: str, needle: str | None = None):
    return run("--trials", "1", *extra, needle=needle, command="tune")


def params_from(text: str, needle: str):
    """A params_from JSON file holding `text` as the parameters of cca."""
    def make(tmp_path: Path) -> Case:
        path = tmp_path / "best.json"
        path.write_text('{"method": "cca", "params": ' + text + "}")
        return run(f"methods.cca.params_from={path}", needle=needle)(tmp_path)
    return make


def data(*args: str, needle: str | None = None, config: str | None = None, fifo_config: bool = False,
         prefix: str = "problem: "):
    """`bench data ARGS`, optionally with a dataset-folders file (XDG_CONFIG_HOME/bench/data.yaml)."""
    def make(tmp_path: Path) -> Case:
        (tmp_path / "empty").mkdir()
        env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "BENCH_RESULTS": str(tmp_path / "results")}
        cfg = tmp_path / "xdg" / "bench" / "data.yaml"
        cfg.parent.mkdir(parents=True)
        if fifo_config:
            os.mkfifo(cfg)
        elif config is not None:
            cfg.write_text(config)
        full = [a.replace("EMPTY", str(tmp_path / "empty")) for a in args]
        return Case(["data", *full, "--cache-dir", str(tmp_path / "results" / "cache")], tmp_path / "results",
                    needle, env, prefix=prefix)
    return make


def ui(*extra: str, needle: str | None = None, store: bool = True):
    """`bench ui` on a results folder holding an (empty) MLflow store unless `store` is off."""
    def make(tmp_path: Path) -> Case:
        results = tmp_path / "results"
        results.mkdir()
        if store:
            (results / "mlflow.db").write_bytes(b"")
        (tmp_path / "adir").mkdir()
        args = [a.replace("DIR", str(tmp_path / "adir")).replace("NEW", str(tmp_path / "new")) for a in extra]
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        return Case(["ui", "--results", str(results), "--port", str(port), *args], results, needle)
    return make


def results_at(make_path, needle: str | None = None, env_empty: bool = False):
    """`bench run` into the results folder `make_path(tmp_path)` (a broken path)."""
    def make(tmp_path: Path) -> Case:
        target = make_path(tmp_path)
        env = {"BENCH_RESULTS": ""} if env_empty else {}
        args = [] if env_empty else ["--results", str(target)]
        return Case(["run", str(_good(tmp_path)), *args], tmp_path / "results", needle, env, cwd=tmp_path)
    return make


def _dangling(tmp_path: Path) -> Path:
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    return tmp_path / "link"


def _loop(tmp_path: Path) -> Path:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    return tmp_path / "a"


def plugin(source: str, needle: str, where: str = "methods/bye.py"):
    """`bench list methods --plugins ROOT` with one plugin file holding `source`."""
    def make(tmp_path: Path) -> Case:
        path = tmp_path / "plug" / where
        path.parent.mkdir(parents=True)
        path.write_text(source)
        return Case(["list", "methods", "--plugins", str(tmp_path / "plug")], tmp_path / "results", needle)
    return make


def journal_fifo(tmp_path: Path) -> Case:
    results = tmp_path / "results"
    journal = results / "good" / "tune" / "optuna.journal"
    journal.parent.mkdir(parents=True)
    os.mkfifo(journal)
    return Case(["tune", str(_good(tmp_path)), "--results", str(results), "--trials", "1"], results,
                "not a regular file")


def cluster_file(text: str, needle: str):
    def make(tmp_path: Path) -> Case:
        path = tmp_path / "slurm.yaml"
        path.write_text(text)
        return run("--cluster", str(path), needle=needle)(tmp_path)
    return make


def not_dask(tmp_path: Path) -> Case:
    """A --scheduler where a server accepts TCP connections and answers with garbage."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n" + b"\xff" * 64)
    threading.Thread(target=serve, daemon=True).start()
    return run("--scheduler", f"tcp://127.0.0.1:{server.getsockname()[1]}", needle="is not a Dask scheduler")(tmp_path)


CASES = {
    # 1. numbers, whatever their source, are finite, 64-bit and within bounds before use
    "1 int parameter inf on the command line": run("methods.cca.dim=.inf", needle="params.dim"),
    "1 int parameter nan on the command line": run("methods.cca.dim=.nan", needle="params.dim"),
    "1 float parameter of 400 digits": run(f"methods.cca.reg={BIG}", needle="params.reg"),
    "1 dataset n inf": run("datasets.synthetic.n=.inf", needle="params.n"),
    "1 negative split seed": run("split.seed=-1", needle="split.seed"),
    "1 negative dataset seed": run("datasets.synthetic.seed=-3", needle="params.seed"),
    "1 params_from Infinity for an int": params_from('{"dim": Infinity}', "params.dim"),
    "1 params_from NaN for an int": params_from('{"dim": NaN}', "params.dim"),
    "1 params_from 400 digits for a float": params_from('{"reg": ' + BIG + "}", "params.reg"),
    "1 threads beyond 64 bits": run("--threads", BIG, needle="--threads"),
    "1 threads absurd": run("--threads", "99999999999", needle="--threads"),
    "1 tune trials beyond reason": tune("--trials", "99999999999999999999", needle="--trials"),
    "1 tune timeout inf": tune("--timeout", "inf", needle="--timeout"),
    "1 cluster jobs of 400 digits": cluster_file(f"slurm: {{cores: 1, memory: 1GB}}\njobs: {BIG}\n", "jobs"),
    # 2. inputs are read only from regular files, bounded, nesting bounded
    "2 tune journal that is a FIFO": journal_fifo,
    "2 dataset-folders file that is a FIFO": data("check", "mirflickr", fifo_config=True, needle="not a regular file"),
    "2 cluster file nested too deeply": cluster_file("slurm: {cores: 1, memory: 1GB}\nx: " + DEEP, "nested"),
    # 3. command-line values pass the same alias, depth and size limits as files
    "3 deeply nested override value": run(f"seeds={DEEP}", needle="nested"),
    "3 deeply nested multirun value": run("-m", f"methods.cca.dim=1,{DEEP}", needle="nested"),
    "3 alias bomb in a multirun value": run("-m", f"methods.cca.dim=1,{BOMB}", needle="expands to more than"),
    "3 alias bomb in a data parameter": data("check", "synthetic", "--param", f"n={BOMB}",
                                             needle="expands to more than"),
    # 4. addresses and storage are checked, with a timeout, before anything is created
    "4 scheduler empty": run("--scheduler", "", needle="--scheduler"),
    "4 scheduler not an address": run("--scheduler", "nonsense", needle="--scheduler"),
    "4 scheduler where nothing listens": run("--scheduler", "tcp://127.0.0.1:1", needle="nothing answers"),
    "4 scheduler with a bad IPv6 address": run("--scheduler", "tcp://[::1", needle="--scheduler"),
    "4 scheduler with a port out of range": run("--scheduler", "tcp://127.0.0.1:99999", needle="port"),
    "4 scheduler that is not Dask": not_dask,
    "4 tune storage sqlite on a folder": tune("--storage", "sqlite:///DIR", needle="is a folder"),
    "4 tune storage sqlite in memory": tune("--storage", "sqlite://", needle="in memory"),
    "4 tune storage sqlite on a text file": tune("--storage", "sqlite:///FILE", needle="not a readable SQLite"),
    "4 tune storage postgresql down": tune("--storage", "postgresql://u@127.0.0.1:1/db", needle="--storage"),
    "4 tune storage mysql without driver or server": tune("--storage", "mysql://u@127.0.0.1:1/db",
                                                          needle="--storage"),
    "4 tracking uri file store": run("--tracking-uri", "file:///DIR/mlruns", needle="file store"),
    "4 tracking uri plain path": run("--tracking-uri", "DIR/mlruns", needle="file store"),
    "4 tracking uri sqlite on a text file": run("--tracking-uri", "sqlite:///FILE", needle="is broken"),
    "4 tracking uri postgresql down": run("--tracking-uri", "postgresql://u@127.0.0.1:1/db",
                                          needle="tracking URI"),
    # 7. bench ui: one line, exit 2, no server started
    "7 ui empty host": ui("--host", "", needle="--host"),
    "7 ui host that does not resolve": ui("--host", "no-such-host.invalid", needle="--host"),
    "7 ui negative wait": ui("--wait", "-1", needle="--wait"),
    "7 ui nan wait": ui("--wait", "nan", needle="--wait"),
    "7 ui tracking uri on a folder": ui("--tracking-uri", "sqlite:///DIR", needle="names a folder"),
    "7 ui tracking server that is down": ui("--tracking-uri", "http://127.0.0.1:1", needle="tracking server"),
    "7 ui new file store": ui("--tracking-uri", "file:///NEW", needle="file store"),
    "7 ui store that is not a database": ui(needle="is broken"),
    # 8. bench data: bad folders and parameters exit 2 with one line
    "8 prepare a dataset without preparation": data("prepare", "synthetic", needle="needs no preparation"),
    "8 prepare from an empty folder": data("prepare", "openclipart", "--from", "EMPTY", needle="holds"),
    "8 prepare with a bad parameter": data("prepare", "openclipart", "--from", "EMPTY", "--param",
                                           "image_features=bogus", needle="image_features"),
    "8 prepare with zero workers": data("prepare", "openclipart", "--from", "EMPTY", "--workers", "0",
                                        needle="--workers", prefix="error: "),  # a usage error
    "8 check with an inf parameter": data("check", "synthetic", "--param", "n=.inf", needle="synthetic.n"),
    "8 check with a malformed parameter": data("check", "synthetic", "--param", "n=[1", needle="invalid YAML"),
    "8 check with a negative seed": data("check", "synthetic", "--param", "seed=-1", needle="synthetic.seed"),
    "8 check with a bad dataset-folders file": data("check", "mirflickr", config="mirflickr: [1\n  x: :\n",
                                                    needle="data.yaml"),
    "8 check with a dataset-folders alias bomb": data("check", "mirflickr", config=f"a: {BOMB}\n",
                                                      needle="expands to more than"),
    # 9. results folders
    "9 results a dangling symlink": results_at(_dangling, needle="does not exist"),
    "9 results under a dangling symlink": results_at(lambda t: _dangling(t) / "sub", needle="does not exist"),
    "9 results a symlink loop": results_at(_loop, needle="loop"),
    "9 results empty": results_at(lambda t: "", needle="--results"),
    "9 BENCH_RESULTS empty": results_at(lambda t: "", needle="BENCH_RESULTS", env_empty=True),
    # 10. silent acceptance
    "10 plugin calling sys.exit(0)": plugin("import sys\nsys.exit(0)\n", "sys.exit(0)"),
    "10 plugin raising SystemExit with text": plugin("raise SystemExit('bye')\n", "sys.exit('bye')"),
    "10 plugin package calling sys.exit": plugin("import sys\nsys.exit(3)\n", "__init__.py", "methods/__init__.py"),
    "10 device empty": run("--device", "", needle="--device"),
    "10 plugins folder empty": run("--plugins", "", needle="--plugins"),
    "10 method label with a newline": run('methods.cca.label="a\\nb"', needle="label"),
    # 12. messages quote huge values shortened; dataset errors name the parameter
    "12 huge string for an integer parameter": data("check", "synthetic", "--param", "n=" + "x" * 1500,
                                                    needle="synthetic.n"),
    "12 data check with rows beyond memory": data("check", "synthetic", "--param", "n=100000000000",
                                                  needle="of memory, more than the"),
    "12 huge unknown parameter name": data("check", "synthetic", "--param", "y" * 1900 + "=1",
                                           needle="unknown parameter"),
    "12 synthetic with more groups than labels": run("datasets.synthetic.groups=9", needle="groups (9)"),
}


@pytest.mark.usefixtures("deadline")
@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_input_of_issue_20_is_refused_cleanly(tmp_path, monkeypatch, name):
    case = CASES[name](tmp_path)
    if case.cwd is not None:
        monkeypatch.chdir(case.cwd)
    before = snapshot(case.results)
    result = CliRunner().invoke(main, case.args, env=case.env or None)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output[-2000:]
    assert result.exit_code == 2, result.output[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(case.prefix) and len(lines[0]) <= MAX_LINE, lines[0][:1000]
    assert case.needle is None or case.needle in lines[0], lines[0]
    assert snapshot(case.results) == before, "something was written under the results folder"
