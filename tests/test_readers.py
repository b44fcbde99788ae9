"""One strict reader for every YAML input: sweep files, --cluster files and command-line values."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from conftest import TINY_SYNTHETIC, files_under, write_sweep

from bench.cli import main
from bench.cluster import load_cluster_file
from bench.errors import ConfigError
from bench.readers import MAX_INPUT_BYTES, read_yaml
from bench.spec import code_text

BOMB = ('a: &a ["x","x","x","x","x","x","x","x","x"]\n' +
        "".join(f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
                for p, c in zip("abcdefgh", "bcdefghi")))


def _sweep(tmp_path):
    return write_sweep(tmp_path, f"""
        name: r
        seeds: [0]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [cca]
    """)


def test_an_alias_bomb_in_a_cluster_file_is_refused_before_it_expands(tmp_path):
    path = tmp_path / "slurm.yaml"
    path.write_text("slurm: {cores: 1, memory: 1GB}\n" + BOMB)
    with pytest.raises(ConfigError, match="expands to more than"):
        load_cluster_file(path)


def test_a_duplicate_key_in_a_cluster_file_is_refused(tmp_path):
    path = tmp_path / "slurm.yaml"
    path.write_text("slurm: {cores: 1, memory: 1GB}\njobs: 1\njobs: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'jobs'"):
        load_cluster_file(path)


def test_an_alias_bomb_in_a_command_line_value_is_refused_like_one_in_a_file(tmp_path):
    levels = ["&a0 [1,1,1,1,1,1,1,1,1,1]"] + [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    token = "seeds=[" + ", ".join(levels) + "]"  # 10**7 values from a few hundred characters
    results = tmp_path / "results"
    res = CliRunner().invoke(main, ["run", str(_sweep(tmp_path)), "--results", str(results), token])
    assert res.exit_code == 2
    assert "expands to more than" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not files_under(results)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_given_as_a_sweep_file_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "sweep.yaml"
    os.mkfifo(fifo)
    res = CliRunner().invoke(main, ["run", str(fifo), "--results", str(tmp_path / "results")])
    assert res.exit_code == 2 and "not a regular file" in res.stderr


def test_an_oversized_input_file_is_refused_with_its_size(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "wb") as fh:
        fh.truncate(MAX_INPUT_BYTES + 1)
    with pytest.raises(ConfigError, match="too large"):
        read_yaml(path, "sweep file")


def test_the_code_version_ignores_comments_docstrings_and_blank_lines_but_not_code():
    base = 'def f(x):\n    """Doc."""\n    return x + 1\n'
    documented = ('"""Module doc."""\n\n# a comment\ndef f(x):  # why\n'
                  '    """Another doc,\n    longer."""\n\n    return x + 1\n')
    edited = 'def f(x):\n    """Doc."""\n    return x + 2\n'
    assert code_text(base) == code_text(documented) == "def f(x):\n    return x + 1"
    assert code_text(edited) != code_text(base)
    assert code_text('s = "# not a comment"\n') == 's = "# not a comment"'
