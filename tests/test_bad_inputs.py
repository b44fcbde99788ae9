"""The bad-input corpus (issue 12): every input here ends with exit code 2, one line on stderr of
bounded length naming what is wrong, no traceback, and nothing written under the results folder.

Sweep files live in tests/bad_inputs/; command-line cases are built below. Each case runs the real
command line in this process (click's runner), so an uncaught exception shows as `result.exception`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_SYNTHETIC, write_sweep

from bench.cli import main

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
MAX_LINE = 400


def snapshot(folder: Path) -> list[tuple[str, int]]:
    """Every file and folder below `folder` with its size (files) or -1 (folders)."""
    if not folder.exists():
        return []
    return sorted((str(p.relative_to(folder)), p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*"))


def assert_clean_refusal(result, results: Path, before: list | None = None) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and len(lines[0]) <= MAX_LINE, lines[0][:1000]
    assert snapshot(results) == (before or []), "something was written under the results folder"


def expected(path: Path) -> str | None:
    """The text a corpus file's refusal must contain, from its first line `# expect: TEXT` (if any)."""
    first = path.read_text(errors="replace").split("\n", 1)[0]
    return first.removeprefix("# expect:").strip() if first.startswith("# expect:") else None


@pytest.mark.usefixtures("deadline")
@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.yaml")))
def test_a_bad_sweep_file_is_refused_cleanly(tmp_path, name):
    results = tmp_path / "results"
    t0 = time.monotonic()
    result = CliRunner().invoke(main, ["run", str(CORPUS / name), "--results", str(results)])
    assert_clean_refusal(result, results)
    assert time.monotonic() - t0 < 20
    needle = expected(CORPUS / name)
    assert needle is None or needle in result.stderr, result.stderr


def test_a_huge_grid_is_refused_quickly_even_on_a_dry_run_and_the_cap_can_be_raised(tmp_path):
    t0 = time.monotonic()
    result = CliRunner().invoke(main, ["run", str(CORPUS / "huge_grid.yaml"), "--dry-run",
                                       "--results", str(tmp_path / "r")])
    assert_clean_refusal(result, tmp_path / "r")
    assert "--max-runs" in result.stderr
    assert time.monotonic() - t0 < 5
    small = write_sweep(tmp_path, f"""
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [{{name: cca, grid: {{dim: [1, 2, 3]}}}}]
        seeds: [0, 1]
    """)
    refused = CliRunner().invoke(main, ["run", str(small), "--dry-run", "--max-runs", "5"])
    assert refused.exit_code == 2 and "6 runs" in refused.stderr
    allowed = CliRunner().invoke(main, ["run", str(small), "--dry-run", "--max-runs", "6",
                                        "--results", str(tmp_path / "r")])
    assert allowed.exit_code == 0, allowed.output


def _good(tmp_path: Path) -> Path:
    return write_sweep(tmp_path, f"""
        name: good
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [cca]
    """)


def _results_is_a_file(tmp_path: Path) -> tuple[list[str], Path]:
    results = tmp_path / "results"
    results.write_text("not a folder")
    return ["run", str(_good(tmp_path)), "--results", str(results)], results


def _corrupt_journal(tmp_path: Path) -> tuple[list[str], Path]:
    results = tmp_path / "results"
    journal = results / "good" / "tune" / "optuna.journal"
    journal.parent.mkdir(parents=True)
    journal.write_bytes(b'{"op_code": 0, "worker_id": "x"\n\x00\x01garbage{{{\n')
    return ["tune", str(_good(tmp_path)), "--results", str(results), "--trials", "1"], results


def _tune_label_path(tmp_path: Path) -> tuple[list[str], Path]:
    path = write_sweep(tmp_path, f"""
        name: t
        datasets: [{{name: synthetic, label: ../../../escaped, params: {TINY_SYNTHETIC}}}]
        methods: [label_regression]
    """)
    return ["tune", str(path), "--results", str(tmp_path / "results"), "--trials", "1"], tmp_path / "results"


def _cli(*extra: str, command: str = "run"):
    def make(tmp_path: Path) -> tuple[list[str], Path]:
        results = tmp_path / "results"
        args = [a.replace("MISSING", str(tmp_path / "missing")) for a in extra]
        return [command, str(_good(tmp_path)), "--results", str(results), *args], results
    return make


CLI_CASES = {
    "device cuda without CUDA": _cli("--device", "cuda"),
    "device malformed": _cli("--device", "cuda:zero"),
    "tracking uri of an unknown scheme": _cli("--tracking-uri", "foo://bar"),
    "tracking uri not a uri": _cli("--tracking-uri", "just words"),
    "tracking uri sqlite in a missing folder": _cli("--tracking-uri", "sqlite:///MISSING/folder/x.db"),
    "tracking server that is not there": _cli("--tracking-uri", "http://127.0.0.1:9"),
    "results folder is a file": _results_is_a_file,
    "tune storage of an unknown scheme": _cli("--storage", "bogus://x", "--trials", "1", command="tune"),
    "tune storage sqlite in a missing folder": _cli("--storage", "sqlite:///MISSING/folder/x.db",
                                                    "--trials", "1", command="tune"),
    "tune negative timeout": _cli("--timeout", "-1", "--trials", "1", command="tune"),
    "tune nan timeout": _cli("--timeout", "nan", "--trials", "1", command="tune"),
    "tune device cuda without CUDA": _cli("--device", "cuda", "--trials", "1", command="tune"),
    "tune corrupt journal": _corrupt_journal,
    "tune label that is a path": _tune_label_path,
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_a_bad_command_line_is_refused_cleanly(tmp_path, case):
    if "CUDA" in case and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args, results = CLI_CASES[case](tmp_path)
    before = snapshot(results) if results.is_dir() else ([] if not results.exists() else None)
    t0 = time.monotonic()
    result = CliRunner().invoke(main, args)
    if before is None:  # the results "folder" is a file: it must be left alone
        assert results.read_text() == "not a folder"
        before = []
        results = tmp_path / "nothing-here"
    assert_clean_refusal(result, results, before)
    assert time.monotonic() - t0 < 20, "a bad input must be refused within seconds"
    assert not (tmp_path.parent / "escaped").exists() and not (tmp_path / "missing").exists()


def test_report_digits_must_be_sensible(tmp_path):
    result = CliRunner().invoke(main, ["report", "--digits", "-1", "--results", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--digits" in lines[0], result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args", [["run"], ["run", "x.yaml", "--workers", "0"], ["report", "--format", "docx"],
                                  ["nosuchcommand"], ["list", "recipes"]])
def test_a_bad_option_or_argument_is_one_line_exit_2(tmp_path, args):
    result = CliRunner().invoke(main, [*args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


def test_a_tracking_server_that_accepts_but_never_answers_fails_within_seconds(tmp_path):
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)  # connections are accepted by the kernel; nothing ever replies
        uri = f"http://127.0.0.1:{server.getsockname()[1]}"
        t0 = time.monotonic()
        result = CliRunner().invoke(main, ["run", str(_good(tmp_path)), "--results", str(tmp_path / "r"),
                                           "--tracking-uri", uri])
        elapsed = time.monotonic() - t0
    assert_clean_refusal(result, tmp_path / "r")
    assert "does not answer within 5 s" in result.stderr
    assert elapsed < 15
