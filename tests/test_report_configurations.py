"""Which runs a report covers and how configurations become rows (issue 18 items 3, 5 and 10):
a configuration is one row across datasets, `bench report` takes the arguments of `bench run`,
a sweep file finds its records after command-line overrides, and `--merge` builds one table for
sweeps that ran on the same data and protocol."""

from __future__ import annotations

from click.testing import CliRunner
from conftest import TINY_SYNTHETIC, write_sweep
from report_records import rec, write

from bench.cli import main
from bench.report import report


def _rows(text: str, title: str) -> dict[str, list[str]]:
    """Row label -> cells of the markdown table under `### title`."""
    block = text.split(f"### {title}\n")[1].split("\n### ")[0]
    lines = [line for line in block.splitlines() if line.startswith("| ") and not line.startswith("| Method")]
    return {cells[0].strip(): [c.strip().strip("*_") for c in cells[1:]]
            for cells in (line.strip("|").split("|") for line in lines)}


def test_a_configuration_is_one_row_across_datasets(tmp_path):
    for seed in (0, 1):
        write(tmp_path, rec("cca", seed, 0.80, params={"dim": 64}, finished="2026-01-01"))
        write(tmp_path, rec("cca", seed, 0.70, params={"dim": 8}, finished="2026-01-02"))
        write(tmp_path, rec("cca", seed, 0.60, params={"dim": 64}, dataset="mfeat", position=10))
    rows = _rows(report(tmp_path, digits=2), "s")
    assert set(rows) == {"cca [dim=64]", "cca [dim=8]"}
    assert rows["cca [dim=64]"][2].startswith("0.80") and rows["cca [dim=64]"][5].startswith("0.60")
    assert rows["cca [dim=8]"][2].startswith("0.70") and rows["cca [dim=8]"][5] == "–"


def test_a_method_with_one_configuration_keeps_its_plain_label(tmp_path):
    write(tmp_path, rec("cca", 0, 0.8, params={"dim": 64}))
    write(tmp_path, rec("cca", 0, 0.6, params={"dim": 64}, dataset="mfeat"))
    assert set(_rows(report(tmp_path), "s")) == {"cca"}


def test_a_second_data_configuration_of_a_dataset_is_a_column_of_its_own(tmp_path):
    write(tmp_path, rec("cca", 0, 0.8, dataset_params={"n": 100}))
    write(tmp_path, rec("cca", 0, 0.6, dataset_params={"n": 500}, finished="2026-02-01"))
    text = report(tmp_path, digits=2)
    assert "synthetic [n=100] Avg" in text and "synthetic [n=500] Avg" in text
    assert set(_rows(text, "s")) == {"cca"}


def _sweep(tmp_path, methods: str = "[{name: cca, params: {dim: 4}}, label_regression]"):
    return write_sweep(tmp_path, f"""
        name: conf
        seeds: [0, 1]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: {methods}
    """)


def _bench(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_the_report_of_a_command_is_the_same_command_with_report_in_place_of_run(tmp_path):
    results, sweep = tmp_path / "results", _sweep(tmp_path)
    assert _bench("run", sweep, "methods.cca.dim=3", "-s", "cca", "--results", results, "--no-mlflow").exit_code == 0
    out = _bench("report", sweep, "methods.cca.dim=3", "-s", "cca", "--results", results)
    assert out.exit_code == 0, out.output
    assert set(_rows(out.output, "conf")) == {"cca [dim=3]"}
    assert "cca [dim=3]: not the sweep file's current definition" in out.output
    assert "this report sets methods.cca.dim=3" in out.output


def test_a_sweep_file_names_the_records_that_overrides_made(tmp_path):
    results, sweep = tmp_path / "results", _sweep(tmp_path)
    assert _bench("run", sweep, "methods.cca.dim=3", "-s", "cca", "--results", results, "--no-mlflow").exit_code == 0
    assert _bench("run", sweep, "-s", "label_regression", "--results", results, "--no-mlflow").exit_code == 0
    out = _bench("report", sweep, "--results", results)
    assert out.exit_code == 0, out.output
    assert set(_rows(out.output, "conf")) == {"label_regression"}
    assert "2 record(s) of sweep conf are of other configurations than this command defines" in out.output
    assert "they differ in dim=3" in out.output and "`bench report conf` (the name) shows every record" in out.output
    by_name = _bench("report", "conf", "--results", results)
    assert set(_rows(by_name.output, "conf")) == {"cca", "label_regression"}


def test_a_sweep_file_without_records_of_its_current_definition_says_where_its_records_are(tmp_path):
    results, sweep = tmp_path / "results", _sweep(tmp_path, "[{name: cca, params: {dim: 4}}]")
    assert _bench("run", sweep, "methods.cca.dim=3", "--results", results, "--no-mlflow").exit_code == 0
    out = _bench("report", sweep, "--results", results)
    assert out.exit_code == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "2 record(s) of sweep conf are of other configurations" in out.stderr and "dim=3" in out.stderr


def test_method_and_dataset_filters_select_rows_of_a_sweep_given_by_name(tmp_path):
    for method in ("cca", "label_regression"):
        for ds in ("synthetic", "mfeat"):
            write(tmp_path, rec(method, 0, 0.5, dataset=ds, sweep="named"))
    out = _bench("report", "named", "-s", "cca", "-d", "mfeat", "--results", tmp_path, "--layout", "long")
    assert out.exit_code == 0, out.output
    rows = [[c.strip() for c in line.split("|")[1:3]] for line in out.output.splitlines()
            if line.startswith("| ") and not line.startswith("| dataset")]
    assert rows == [["mfeat", "cca"]]


def test_overrides_without_a_sweep_file_are_one_line_exit_2(tmp_path):
    write(tmp_path, rec("cca", 0, 0.5, sweep="named"))
    out = _bench("report", "methods.cca.dim=3", "--results", tmp_path)
    assert out.exit_code == 2 and len(out.stderr.strip().splitlines()) == 1 and "need the sweep" in out.stderr


# --- --merge ---------------------------------------------------------------------------------


def _merge_fixture(tmp_path, split_b=None):
    for seed in (0, 1):
        write(tmp_path, rec("cca", seed, 0.5, sweep="baselines"))
        write(tmp_path, rec("label_regression", seed, 0.6, sweep="baselines", position=1))
        write(tmp_path, rec("pgnn_con", seed, 0.8, sweep="ablation", split=split_b))
        write(tmp_path, rec("pgnn_con/no_gan", seed, 0.7 + seed / 100, sweep="ablation", split=split_b, position=1))


def test_merge_puts_baselines_proposed_model_and_variants_in_one_table(tmp_path):
    _merge_fixture(tmp_path)
    text = report(tmp_path, ["baselines", "ablation"], merge=True)
    assert set(_rows(text, "baselines+ablation")) == {"cca", "label_regression", "pgnn_con", "pgnn_con/no_gan"}
    assert text.count("\n### ") + text.startswith("### ") == 2  # one main table and its ablation table
    assert "### baselines+ablation: variants − full model" in text


def test_merge_refuses_sweeps_whose_split_differs_with_one_line_exit_2(tmp_path):
    _merge_fixture(tmp_path, split_b={"val": 0.2, "test": 0.2, "seed": 0})
    out = _bench("report", "baselines", "ablation", "--merge", "--results", tmp_path, "-o", tmp_path / "r.md")
    assert out.exit_code == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "differ on dataset synthetic (split:" in out.stderr and not (tmp_path / "r.md").exists()


def test_merge_refuses_sweeps_run_on_different_data(tmp_path):
    _merge_fixture(tmp_path)
    write(tmp_path, rec("cca", 2, 0.5, sweep="baselines", fingerprint="other-data"))
    out = _bench("report", "baselines", "ablation", "--merge", "--results", tmp_path)
    assert out.exit_code == 2 and "data fingerprint" in out.stderr
