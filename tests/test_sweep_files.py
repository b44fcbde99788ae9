"""Sweep files: expansion into run specs, parameter precedence, run keys, one-line config errors."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from conftest import TINY_SYNTHETIC, write_sweep

from bench.errors import ConfigError
from bench.sweep import load_sweep


def _sweep(tmp_path, body, name="sweep"):
    return load_sweep(write_sweep(tmp_path, body, name))


def test_the_grid_expands_to_datasets_times_methods_times_grid_times_seeds(tmp_path):
    sw = _sweep(tmp_path, f"""
        seeds: [0, 1, 2]
        datasets:
          - {{name: synthetic, label: small, params: {TINY_SYNTHETIC}}}
          - {{name: synthetic, label: other, params: {{n: 300}}}}
        methods:
          - name: cca
            grid: {{dim: [4, 8], reg: [0.1, 0.01]}}
          - label_regression
    """)
    assert len(sw.specs) == 2 * (2 * 2 + 1) * 3
    per_method = Counter((s.dataset_label, s.method) for s in sw.specs)
    assert per_method[("small", "cca")] == 12 and per_method[("other", "label_regression")] == 3
    cca_small = {(s.params["dim"], s.params["reg"], s.seed) for s in sw.specs
                 if s.dataset_label == "small" and s.method == "cca"}
    assert cca_small == {(d, r, seed) for d in (4, 8) for r in (0.1, 0.01) for seed in (0, 1, 2)}


def test_grid_values_appear_in_the_method_label(tmp_path):
    sw = _sweep(tmp_path, """
        datasets: [synthetic]
        methods: [{name: cca, grid: {dim: [4, 8]}}]
    """)
    assert [s.method_label for s in sw.specs] == ["cca dim=4", "cca dim=8"]


def test_the_sweep_name_defaults_to_the_file_stem_and_seeds_to_zero(tmp_path):
    sw = _sweep(tmp_path, "datasets: [synthetic]\nmethods: [cca]\n", name="my-sweep")
    assert sw.name == "my-sweep"
    assert [s.seed for s in sw.specs] == [0]


def test_per_dataset_overrides_apply_to_that_dataset_only(tmp_path):
    sw = _sweep(tmp_path, """
        datasets:
          - {name: synthetic, label: a}
          - {name: synthetic, label: b, params: {n: 300}}
        methods: [cca]
        overrides:
          a: {cca: {dim: 7}}
    """)
    dims = {s.dataset_label: s.params["dim"] for s in sw.specs}
    assert dims == {"a": 7, "b": 64}


def test_overrides_may_name_the_dataset_instead_of_the_label(tmp_path):
    sw = _sweep(tmp_path, """
        datasets: [{name: synthetic, label: small}]
        methods: [cca]
        overrides: {synthetic: {cca: {dim: 5}}}
    """)
    assert sw.specs[0].params["dim"] == 5


def test_a_star_override_applies_to_every_method_that_has_the_parameter(tmp_path):
    sw = _sweep(tmp_path, """
        datasets: [synthetic]
        methods: [cca, label_regression, coretest_counting]
        overrides:
          synthetic: {"*": {dim: 9, lam: 0.5}}
    """)
    params = {s.method: s.params for s in sw.specs}
    assert params["cca"]["dim"] == 9 and params["coretest_counting"]["dim"] == 9
    assert params["label_regression"] == {"lam": 0.5}


def test_a_named_override_beats_a_star_override(tmp_path):
    sw = _sweep(tmp_path, """
        datasets: [synthetic]
        methods: [cca]
        overrides:
          synthetic: {"*": {dim: 9}, cca: {dim: 3}}
    """)
    assert sw.specs[0].params["dim"] == 3


def test_precedence_is_defaults_then_presets_then_overrides_then_sweep_params(tmp_path):
    sw = _sweep(tmp_path, """
        datasets: [synthetic]
        methods:
          - name: coretest_layered
            params: {from_sweep: 3}
        overrides:
          synthetic: {coretest_layered: {from_override: 2, from_sweep: 2}}
    """)
    assert sw.specs[0].params == {"from_default": 0, "from_preset": 1, "from_override": 2, "from_sweep": 3,
                                  "fixed_by_variant": 1}


def test_presets_apply_only_to_their_dataset(tmp_path):
    from bench.registry import get_method

    assert "synthetic" in get_method("coretest_layered").cls.presets
    sw = _sweep(tmp_path, """
        datasets: [synthetic]
        methods: [cca]
    """)
    assert sw.specs[0].params == {"dim": 64, "reg": 0.01, "power": 1.0}  # cca has no preset: its defaults


def test_a_variant_fixed_value_beats_presets_and_overrides(tmp_path):
    sw = _sweep(tmp_path, """
        datasets: [synthetic]
        methods: [coretest_layered/pinned]
        overrides:
          synthetic: {"*": {fixed_by_variant: 2}}
    """)
    assert sw.specs[0].params["fixed_by_variant"] == 4
    assert sw.specs[0].family == "coretest_layered" and sw.specs[0].method == "coretest_layered/pinned"


def test_setting_a_parameter_the_variant_fixes_is_an_error(tmp_path):
    path = write_sweep(tmp_path, """
        datasets: [synthetic]
        methods:
          - name: coretest_layered/pinned
            params: {fixed_by_variant: 2}
    """)
    with pytest.raises(ConfigError, match=r"fixed_by_variant: 'coretest_layered/pinned' fixes fixed_by_variant=4"):
        load_sweep(path)


def test_repeating_the_fixed_value_of_a_variant_is_allowed(tmp_path):
    sw = _sweep(tmp_path, """
        datasets: [synthetic]
        methods: [{name: coretest_layered/pinned, params: {fixed_by_variant: 4}}]
    """)
    assert sw.specs[0].params["fixed_by_variant"] == 4


def test_overrides_beat_parameters_from_a_tuning_file_as_documented(tmp_path):
    tuned = tmp_path / "tuned.json"
    tuned.write_text(json.dumps({"method": "cca", "params": {"dim": 8, "reg": 0.5}}))
    sw = _sweep(tmp_path, f"""
        datasets: [synthetic]
        methods: [{{name: cca, params_from: {tuned}}}]
        overrides: {{synthetic: {{cca: {{dim: 16}}}}}}
    """)
    assert (sw.specs[0].params["dim"], sw.specs[0].params["reg"]) == (16, 0.5)


def test_parameters_from_a_tuning_file_are_used_and_sweep_params_beat_them(tmp_path):
    tuned = tmp_path / "tuned.json"
    tuned.write_text(json.dumps({"method": "cca", "params": {"dim": 8, "reg": 0.5}}))
    sw = _sweep(tmp_path, f"""
        datasets: [synthetic]
        methods: [{{name: cca, params_from: {tuned}, params: {{reg: 0.25}}}}]
    """)
    assert (sw.specs[0].params["dim"], sw.specs[0].params["reg"]) == (8, 0.25)
    assert sw.specs[0].method_label == "cca (tuned)"


def test_the_split_defaults_apply_and_a_dataset_may_override_them(tmp_path):
    sw = _sweep(tmp_path, """
        split: {val: 0.2, seed: 3}
        datasets:
          - {name: synthetic, label: a}
          - {name: synthetic, label: b, split: {val: 0.3}, params: {n: 300}}
        methods: [cca]
    """)
    splits = {s.dataset_label: s.split for s in sw.specs}
    assert splits["a"] == {"val": 0.2, "test": 0.2, "seed": 3, "retrieval": "test"}
    assert splits["b"] == {"val": 0.3, "test": 0.2, "seed": 3, "retrieval": "test"}


def test_a_complete_missing_spec_means_no_mask(tmp_path):
    sw = _sweep(tmp_path, """
        datasets:
          - {name: synthetic, label: full, missing: {paired: 1.0}}
          - {name: synthetic, label: part, params: {n: 300}, missing: {paired: 0.2, image_only: 0.4, text_only: 0.4}}
        methods: [cca]
    """)
    missing = {s.dataset_label: s.missing for s in sw.specs}
    assert missing["full"] is None
    assert missing["part"] == {"paired": 0.2, "image_only": 0.4, "text_only": 0.4, "seed": 0}


def test_the_shipped_quick_sweep_shows_the_model_its_ablations_and_baselines_on_two_seeds():
    from pathlib import Path

    sw = load_sweep(Path(__file__).resolve().parent.parent / "sweeps" / "quick.yaml")
    assert sw.name == "quick"
    assert {s.dataset for s in sw.specs} == {"synthetic"}
    assert {s.method for s in sw.specs} == {"pgnn_con", "pgnn_con/no_gan", "pgnn_con/no_con", "ignn_con",
                                            "label_regression", "cca"}
    assert {s.seed for s in sw.specs} == {0, 1}
    gnn = [s for s in sw.specs if s.family in ("pgnn_con", "ignn_con")]
    assert {(s.params["D"], s.params["epochs"]) for s in gnn} == {(256, 40)}  # small: minutes on 2 CPU cores
    assert {s.params["gan"] for s in gnn if s.method == "pgnn_con/no_gan"} == {False}
    assert {s.params["con_weight"] for s in gnn if s.method == "pgnn_con/no_con"} == {0.0}


def test_the_shipped_smoke_sweep_is_small():
    from pathlib import Path

    sw = load_sweep(Path(__file__).resolve().parent.parent / "sweeps" / "smoke.yaml")
    assert len(sw.specs) == 3 and {s.dataset_params["n"] for s in sw.specs} == {300}
    assert {s.method for s in sw.specs} == {"cca", "label_regression", "pgnn_con"}


# --- run keys --------------------------------------------------------------------------------------

BASE = """
seeds: [0, 1]
datasets: [{name: synthetic, params: {n: 300}}]
methods: [{name: cca, params: {dim: 8}}]
"""


def _keys(tmp_path, body, name="k"):
    return [s.key for s in _sweep(tmp_path, body, name).specs]


def test_the_run_key_is_stable_across_parses(tmp_path):
    assert _keys(tmp_path, BASE, "one") == _keys(tmp_path, BASE, "two")


def test_the_run_key_changes_with_a_parameter(tmp_path):
    assert set(_keys(tmp_path, BASE)).isdisjoint(_keys(tmp_path, BASE.replace("dim: 8", "dim: 9"), "p"))


def test_the_run_key_changes_with_the_seed(tmp_path):
    a, b = _keys(tmp_path, BASE)
    assert a != b


def test_the_run_key_changes_with_dataset_parameters_and_split(tmp_path):
    base = set(_keys(tmp_path, BASE))
    assert base.isdisjoint(_keys(tmp_path, BASE.replace("n: 300", "n: 301"), "d"))
    assert base.isdisjoint(_keys(tmp_path, "split: {seed: 1}\n" + BASE, "s"))


def test_the_run_key_ignores_labels_and_the_device(tmp_path):
    relabelled = BASE.replace("name: cca,", "name: cca, label: CCA-8,").replace(
        "{name: synthetic,", "{name: synthetic, label: synth,")
    assert _keys(tmp_path, BASE) == _keys(tmp_path, "device: cpu\n" + relabelled, "l")


def test_the_run_key_changes_with_the_method_code_version(tmp_path):
    import dataclasses

    spec = _sweep(tmp_path, BASE).specs[0]
    assert dataclasses.replace(spec, code_version="edited").key != spec.key


# --- config errors: one line naming the file and the key -------------------------------------------

OK_DATASETS = "datasets: [synthetic]\n"
OK_METHODS = "methods: [cca]\n"

BAD_SWEEPS = {
    "unknown top-level key": (
        "dataset: [synthetic]\n" + OK_METHODS,
        r"\(top level\): unknown key 'dataset' \(did you mean datasets"),
    "unknown method": (
        OK_DATASETS + "methods: [cca, label_regresion]\n",
        r"methods\.1\.name: unknown method 'label_regresion' \(did you mean label_regression"),
    "unknown dataset": (
        "datasets: [synthetc]\n" + OK_METHODS,
        r"datasets\.0\.name: unknown dataset 'synthetc' \(did you mean synthetic"),
    "missing required key": (
        OK_DATASETS,
        r"missing required key 'methods'"),
    "negative epoch count": (
        OK_DATASETS + "methods: [{name: coretest_counting, params: {epochs: -3}}]\n",
        r"coretest_counting\.params\.epochs: -3 is below the minimum 1"),
    "wrong type": (
        OK_DATASETS + "methods: [{name: cca, params: {dim: big}}]\n",
        r"params\.dim: expected an integer, got 'big'"),
    "unknown method parameter": (
        OK_DATASETS + "methods: [{name: cca, params: {dims: 4}}]\n",
        r"unknown parameter 'dims' \(did you mean dim"),
    "unknown dataset parameter": (
        "datasets: [{name: synthetic, params: {rows: 10}}]\n" + OK_METHODS,
        r"datasets\.0\.params: unknown parameter 'rows'"),
    "unknown dataset key": (
        "datasets: [{name: synthetic, parms: {n: 300}}]\n" + OK_METHODS,
        r"datasets\.0: unknown key 'parms' \(did you mean params"),
    "empty grid": (
        OK_DATASETS + "methods: [{name: cca, grid: {dim: []}}]\n",
        r"methods\.0\.grid\.dim: empty grid"),
    "grid not a list": (
        OK_DATASETS + "methods: [{name: cca, grid: {dim: 4}}]\n",
        r"methods\.0\.grid\.dim: expected a list"),
    "broken yaml": (
        OK_DATASETS + OK_METHODS + "seeds: [0, 1\n",
        r"line \d+, column \d+: invalid YAML"),
    "duplicate seeds": (
        OK_DATASETS + OK_METHODS + "seeds: [0, 1, 0]\n",
        r"seeds: duplicate seeds"),
    "negative seed": (
        OK_DATASETS + OK_METHODS + "seeds: [-1]\n",
        r"seeds: expected a non-empty list of non-negative integers"),
    "duplicate dataset labels": (
        "datasets: [{name: synthetic}, {name: synthetic, params: {n: 300}}]\n" + OK_METHODS,
        r"datasets\.1\.label: 'synthetic' is used twice"),
    "duplicate run": (
        OK_DATASETS + "methods: [cca, cca]\n",
        r"appears twice"),
    "duplicate method label": (
        OK_DATASETS + "methods: [{name: cca, label: x}, {name: label_regression, label: x}]\n",
        r"both labelled 'x'"),
    "bad device": (
        OK_DATASETS + OK_METHODS + "device: gpu\n",
        r"device: 'gpu' is not one of"),
    "bad split fraction": (
        OK_DATASETS + OK_METHODS + "split: {val: 1.5}\n",
        r"split\.val: 1.5 is above the maximum 0.9"),
    "grid key also in params": (
        OK_DATASETS + "methods: [{name: cca, params: {dim: 4}, grid: {dim: [8]}}]\n",
        r"grid\.dim: also set in params"),
    "not a mapping": (
        "- cca\n",
        r"must be a mapping"),
}


@pytest.mark.parametrize("case", list(BAD_SWEEPS))
def test_a_bad_sweep_is_a_one_line_config_error_naming_the_file_and_key(tmp_path, case):
    body, pattern = BAD_SWEEPS[case]
    path = write_sweep(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    msg = str(err.value)
    assert msg.startswith(str(path)), msg
    assert "\n" not in msg
    assert re.search(pattern, msg), msg


def test_the_broken_yaml_message_gives_the_line_of_the_problem(tmp_path):
    path = write_sweep(tmp_path, "datasets: [synthetic]\nmethods: [cca]\nseeds: [0\nname: x\n")
    with pytest.raises(ConfigError, match=r"line 4, column 5"):
        load_sweep(path)


def test_a_missing_sweep_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such sweep file"):
        load_sweep(tmp_path / "nope.yaml")


def test_mask_fractions_not_summing_to_one_name_the_file_and_key(tmp_path):
    path = write_sweep(tmp_path, OK_METHODS + "datasets: [{name: synthetic, missing: {paired: 0.5}}]\n")
    with pytest.raises(ConfigError, match=rf"^{path}: datasets\.0\.missing"):
        load_sweep(path)


def test_a_method_name_that_is_not_a_string_is_a_config_error(tmp_path):
    path = write_sweep(tmp_path, OK_DATASETS + "methods: [{name: [cca]}]\n")
    with pytest.raises(ConfigError, match=r"methods\.0\.name"):
        load_sweep(path)


def test_an_override_for_an_unknown_dataset_is_an_error(tmp_path):
    path = write_sweep(tmp_path, OK_DATASETS + OK_METHODS + "overrides: {synthtic: {cca: {dim: 4}}}\n")
    with pytest.raises(ConfigError, match=r"overrides.*synthtic.*did you mean synthetic"):
        load_sweep(path)


def test_a_star_override_that_fits_no_method_is_an_error(tmp_path):
    path = write_sweep(tmp_path, OK_DATASETS + OK_METHODS + "overrides: {synthetic: {'*': {dimm: 4}}}\n")
    with pytest.raises(ConfigError, match=r"dimm"):
        load_sweep(path)


def test_a_sweep_file_that_is_not_text_is_a_config_error(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00 not text")
    with pytest.raises(ConfigError, match=rf"^{path}"):
        load_sweep(path)


SHIPPED = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_sweep_loads_and_dry_runs_by_name(name, tmp_path):
    # sweeps/incomplete.yaml carried a dataset label with '/' that the label check of issue 12 refuses
    from click.testing import CliRunner

    from bench.cli import main

    res = CliRunner().invoke(main, ["run", name, "--dry-run", "--results", str(tmp_path / "res")])
    assert res.exit_code == 0, res.output
    assert "runs to do" in res.output and "nothing was run" in res.output
