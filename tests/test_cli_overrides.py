"""Hydra/benchopt habits of the command line: overrides, filters, `bench info`, progress off a terminal."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY_SYNTHETIC, Projection, files_under, registered, write_sweep

from bench.cli import main
from bench.errors import ConfigError
from bench.params import spec
from bench.registry import get_method
from bench.sweep import load_sweep

ROOT = Path(__file__).resolve().parent.parent
OTHER = TINY_SYNTHETIC.replace("n: 240", "n: 260")  # a second dataset entry (distinct data, so distinct runs)


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _sweep(tmp_path, methods="[coretest_counting, coretest_layered, coretest_layered/pinned]"):
    return write_sweep(tmp_path, f"""
        name: ov
        seeds: [0, 1]
        datasets:
          - {{name: synthetic, params: {TINY_SYNTHETIC}}}
          - {{name: synthetic, label: other, params: {OTHER}}}
        methods: {methods}
    """)


# --- the override grammar: what each token does ---------------------------------------------

def test_a_top_level_override_replaces_the_seeds(tmp_path):
    sweep = load_sweep(_sweep(tmp_path), assignments=["seeds=[0]"])
    assert {s.seed for s in sweep.specs} == {0}
    assert len(sweep.specs) == 2 * 3


def test_a_method_override_sets_the_parameter_and_changes_the_run_key(tmp_path):
    path = _sweep(tmp_path)
    before = {(s.dataset_label, s.method, s.seed): s for s in load_sweep(path).specs}
    after = load_sweep(path, assignments=["methods.coretest_counting.dim=7"]).specs
    for s in after:
        old = before[(s.dataset_label, s.method, s.seed)]
        if s.method == "coretest_counting":
            assert s.params["dim"] == 7 and old.params["dim"] == 4
            assert s.key != old.key
        else:
            assert s.key == old.key


def test_a_family_override_reaches_its_variants_but_not_where_a_variant_fixes_it(tmp_path):
    specs = load_sweep(_sweep(tmp_path), assignments=["methods.coretest_layered.fixed_by_variant=9",
                                                    "methods.coretest_layered.from_sweep=5"]).specs
    by_method = {s.method: s.params for s in specs}
    assert by_method["coretest_layered"]["fixed_by_variant"] == 9
    assert by_method["coretest_layered/pinned"]["fixed_by_variant"] == 4   # the variant's fixed value stays
    assert by_method["coretest_layered/pinned"]["from_sweep"] == 5          # the family override reached it


def test_a_dataset_override_selects_by_label_and_sets_a_dataset_parameter(tmp_path):
    specs = load_sweep(_sweep(tmp_path), assignments=["datasets.other.n=300"]).specs
    ns = {s.dataset_label: s.dataset_params["n"] for s in specs}
    assert ns == {"synthetic": 240, "other": 300}


def test_a_dataset_override_can_reach_an_entry_key(tmp_path):
    specs = load_sweep(_sweep(tmp_path), assignments=["datasets.other.split.val=0.3"]).specs
    vals = {s.dataset_label: s.split["val"] for s in specs}
    assert vals["other"] == 0.3 and vals["synthetic"] != 0.3


def test_a_dataset_selector_by_name_reaches_every_entry_of_that_dataset(tmp_path):
    specs = load_sweep(_sweep(tmp_path), assignments=["datasets.synthetic.split.val=0.3"]).specs
    assert {s.split["val"] for s in specs} == {0.3}


def test_an_override_replaces_a_grid_over_the_same_parameter(tmp_path):
    path = _sweep(tmp_path, methods="[{name: coretest_counting, grid: {dim: [2, 3]}}]")
    specs = load_sweep(path, assignments=["methods.coretest_counting.dim=5"]).specs
    assert {s.params["dim"] for s in specs} == {5} and len(specs) == 4


def test_multirun_turns_comma_values_into_a_grid_and_a_seed_list(tmp_path):
    specs = load_sweep(_sweep(tmp_path, methods="[coretest_counting]"), multirun=True,
                       assignments=["methods.coretest_counting.dim=2,3,5", "seeds=0,1,2"]).specs
    combos = {(s.dataset_label, s.params["dim"], s.seed) for s in specs}
    assert len(specs) == len(combos) == 2 * 3 * 3
    assert {s.params["dim"] for s in specs} == {2, 3, 5}


def test_without_multirun_a_comma_value_is_a_single_yaml_value(tmp_path):
    with pytest.raises(Exception, match="expected an integer"):
        load_sweep(_sweep(tmp_path, methods="[coretest_counting]"), assignments=["methods.coretest_counting.dim=2,3"])


# --- the override grammar: errors are one line, exit 2, nothing written ------------------------

BAD_OVERRIDES = {
    "no equals sign": ("seeds", "overrides are key=value"),
    "empty key part": ("methods..dim=3", "is not a key path"),
    "unknown top-level key": ("seed=[0]", "unknown key 'seed' (did you mean seeds"),
    "unknown method selector": ("methods.coretest_countin.dim=3", "no entry of methods is named 'coretest_countin'"),
    "unknown parameter": ("methods.coretest_counting.dimm=3", "has no parameter 'dimm' (did you mean dim"),
    "bad value type": ("methods.coretest_counting.dim=abc", "expected an integer"),
    "out of range": ("methods.coretest_counting.dim=0", "below the minimum"),
    "broken yaml value": ("seeds=[0", "invalid YAML"),
    "empty value": ("seeds=", "empty value"),
    "fixed by the named variant": ("methods.coretest_layered/pinned.fixed_by_variant=3", "fixes fixed_by_variant"),
    "unknown dataset selector": ("datasets.nope.n=3", "no entry of datasets is named 'nope'"),
    "unknown dataset parameter": ("datasets.synthetic.nn=3", "has no parameter 'nn'"),
    "entry name": ("methods.coretest_counting.name=cca", "name cannot be overridden"),
    "bad seeds": ("seeds=[-1]", "non-negative integers"),
}


@pytest.mark.parametrize("case", list(BAD_OVERRIDES))
def test_a_bad_override_is_one_line_exit_2_and_writes_nothing(tmp_path, case):
    token, message = BAD_OVERRIDES[case]
    results = tmp_path / "results"
    result = CliRunner().invoke(main, ["run", str(_sweep(tmp_path)), token, "--results", str(results)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output and result.stdout == ""
    assert not results.exists()


def test_a_filter_that_selects_nothing_names_what_exists(tmp_path):
    result = _invoke("run", _sweep(tmp_path), "--method", "nothing*", "--results", tmp_path / "r")
    assert result.exit_code == 2
    assert "selects no run" in result.stderr and "coretest_counting" in result.stderr
    assert not (tmp_path / "r").exists()


# --- filters and the issue's own example ---------------------------------------------------------

def test_filters_keep_only_the_matching_methods_and_datasets(tmp_path):
    specs = load_sweep(_sweep(tmp_path), only_methods=("coretest_layered*",), only_datasets=("other",)).specs
    assert {(s.method, s.dataset_label) for s in specs} == {("coretest_layered", "other"),
                                                             ("coretest_layered/pinned", "other")}


def test_the_ablation_example_dry_run_lists_exactly_those_runs_with_their_parameters(tmp_path):
    result = _invoke("run", ROOT / "sweeps" / "ablation.yaml", "--method", "pgnn_con*", "--dataset", "synthetic",
                     "seeds=[0]", "methods.pgnn_con.epochs=3", "--dry-run", "--results", tmp_path / "r")
    assert result.exit_code == 0, result.output
    runs = [line for line in result.stdout.splitlines() if line.startswith("todo")]
    expected = [n for n in ("pgnn_con", "pgnn_con/no_gan", "pgnn_con/no_gnn", "pgnn_con/binary_con",
                            "pgnn_con/no_con", "pgnn_con/no_layer_agg", "pgnn_con/no_recon")]
    assert [line.split(" | ")[1] for line in runs] == expected
    assert all(line.endswith("seed 0") and "synthetic" in line for line in runs)
    params = [line for line in result.stdout.splitlines() if line.strip().startswith("params:")]
    assert len(params) == len(expected) and all(" epochs=3 " in f"{p} " for p in params)
    assert not (tmp_path / "r").exists()


def test_dry_run_says_which_runs_are_done_retried_or_skipped_and_why(tmp_path, failing):
    path = write_sweep(tmp_path, f"""
        name: dr
        seeds: [0, 1]
        datasets:
          - {{name: synthetic, params: {TINY_SYNTHETIC}}}
          - {{name: mirflickr, optional: true, params: {{root: {tmp_path / 'absent'}}}}}
        methods: [coretest_failing]
    """)
    results = tmp_path / "r"
    assert _invoke("run", path, "--results", results, "--no-mlflow").exit_code == 1  # seed 1 fails
    out = _invoke("run", path, "--results", results, "--dry-run").stdout
    states = {line.split()[0]: line for line in out.splitlines() if line[:5].strip() in ("done", "retry", "skip")}
    assert "seed 0" in states["done"]
    assert "seed 1" in states["retry"] and "planted failure for seed 1" in states["retry"]
    assert "mirflickr" in states["skip"] and "(dataset mirflickr:" in states["skip"]
    assert re.search(r"1 of 4 runs to do \(1 retried after failing\), 1 done, 2 skipped", out)


# --- bench info, --help, progress lines, Ctrl-C -------------------------------------------------

def test_info_lists_every_parameter_with_type_default_and_help():
    result = _invoke("info", "pgnn_con")
    assert result.exit_code == 0, result.output
    entry = get_method("pgnn_con")
    lines = result.stdout.splitlines()
    for f in dataclasses.fields(entry.cls.Params):
        row = next((line for line in lines if line.split() and line.split()[0] == f.name), None)
        assert row is not None, f"parameter {f.name} missing from bench info"
        if f.metadata.get("help"):
            assert f.metadata["help"][:30] in row
    assert any(line.startswith("presets") for line in lines) and any("mirflickr:" in line for line in lines)
    assert any(line.startswith("search space") for line in lines) and any("tau: float in" in line for line in lines)


def test_info_of_a_variant_shows_what_it_fixes():
    out = _invoke("info", "pgnn_con/no_gan").stdout
    assert "fixes: gan=False" in out
    row = next(line for line in out.splitlines() if line.split() and line.split()[0] == "gan")
    assert "(fixed)" in row


def test_info_of_an_unknown_name_suggests_near_matches():
    result = _invoke("info", "pgnn_cn")
    assert result.exit_code == 2 and "did you mean pgnn_con" in result.stderr


def test_help_shows_each_commands_whole_summary():
    out = " ".join(_invoke("--help").stdout.split())
    for name, cmd in main.commands.items():
        first = " ".join((cmd.help or "").strip().splitlines()[0].split())
        assert first in out, f"summary of {name} is cut: {first!r}"


def test_a_run_whose_output_is_not_a_terminal_prints_a_line_per_epoch(tmp_path):
    path = write_sweep(tmp_path, f"""
        name: ep
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [{{name: pgnn_con, params: {{epochs: 3, D: 8, batch: 60, layers: 1}}}}]
    """)
    result = _invoke("run", path, "--results", tmp_path / "r", "--no-mlflow")
    assert result.exit_code == 0, result.output
    epochs = re.findall(r"^  epoch (\d+) synthetic \| pgnn_con \| seed 0: val mAP 0\.\d{4}", result.stdout, re.M)
    assert epochs == ["1", "2", "3"]


@dataclasses.dataclass
class _InterruptParams:
    dim: int = spec(4, low=1)


class InterruptingMethod(Projection):
    """Fits seed 0, then raises KeyboardInterrupt (a Ctrl-C) on any other seed."""

    name = "coretest_interrupting"
    description = "test-only: Ctrl-C on seeds > 0"
    Params = _InterruptParams

    def fit(self, train, val, ctx):
        if ctx.seed > 0:
            raise KeyboardInterrupt
        self._project(train, ctx.seed)


def test_ctrl_c_says_what_was_kept_and_that_a_rerun_resumes(tmp_path):
    path = write_sweep(tmp_path, f"""
        name: cc
        seeds: [0, 1]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [coretest_interrupting]
    """)
    results = tmp_path / "r"
    result = _invoke("run", path, "--results", results, "--no-mlflow")
    assert result.exit_code == 130
    assert "interrupted: 1 run(s) of this invocation were recorded (1 ok, 0 failed)" in result.stderr
    assert "rerun the same command to resume" in result.stderr
    records = [json.loads(p.read_text()) for p in files_under(results / "cc" / "runs") if p.suffix == ".json"]
    assert [(r["spec"]["seed"], r["status"]) for r in records] == [(0, "ok")]


def test_list_verbose_shows_the_parameters_of_each_match():
    out = _invoke("list", "methods", "cca", "-v").stdout
    assert out.splitlines()[0].startswith("cca: ")
    for f in dataclasses.fields(get_method("cca").cls.Params):
        assert any(line.split() and line.split()[0] == f.name for line in out.splitlines())


def test_a_wildcard_parameter_override_applies_to_every_method_that_has_it(tmp_path):
    path = write_sweep(tmp_path, f"""
        name: star
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: [coretest_counting, cca]
    """)
    specs = load_sweep(path, assignments=["methods.*.epochs=5"]).specs
    params = {s.method: s.params for s in specs}
    assert params["coretest_counting"]["epochs"] == 5 and "epochs" not in params["cca"]
    with pytest.raises(ConfigError, match=r"no entry selected by '\*' has a parameter 'nonsense'"):
        load_sweep(path, assignments=["methods.*.nonsense=5"])


@pytest.fixture(scope="module", autouse=True)
def _test_plugins():
    """This module's test-only plugin, registered while its tests run."""
    with registered(InterruptingMethod):
        yield
