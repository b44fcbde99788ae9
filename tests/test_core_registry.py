"""Registries: plugin folders imported under a private name, duplicates refused, near matches offered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURE_ROOT

from bench.dataset import Dataset
from bench.errors import BenchError, UnknownNameError
from bench.method import Method
from bench.registry import (
    _import_folder,
    dataset_classes,
    get_dataset,
    get_method,
    load_plugins,
    match,
    method_entries,
    register_dataset,
    register_method,
)

PROJECT = Path(__file__).resolve().parent.parent


def test_the_project_plugin_folders_are_imported_under_a_private_package():
    assert get_method("cca").cls.__module__ == "_bench_plugins.methods.cca"
    assert get_method("label_regression").cls.__module__ == "_bench_plugins.methods.label_regression"
    assert get_dataset("synthetic").__module__ == "_bench_plugins.datasets.synthetic"


def test_loading_plugins_does_not_claim_the_top_level_name_datasets():
    load_plugins()
    ours = (PROJECT / "datasets").resolve()
    mod = sys.modules.get("datasets")
    where = [Path(p).resolve() for p in getattr(mod, "__path__", [])] + (
        [Path(mod.__file__).resolve().parent] if getattr(mod, "__file__", None) else [])
    assert ours not in where
    assert "_bench_plugins.datasets" in sys.modules


def test_the_baselines_and_the_synthetic_dataset_are_registered():
    assert {"cca", "label_regression"} <= set(method_entries())
    assert "synthetic" in dataset_classes()


def test_registering_a_second_method_class_under_a_taken_name_raises():
    class First(Method):
        name = "coretest_duplicate"

    class Second(Method):
        name = "coretest_duplicate"

    register_method(First)
    with pytest.raises(BenchError, match="method name 'coretest_duplicate' is registered twice"):
        register_method(Second)
    assert get_method("coretest_duplicate").cls is First


def test_registering_a_second_dataset_class_under_a_taken_name_raises():
    class Other(Dataset):
        name = "synthetic"

    with pytest.raises(BenchError, match="dataset name 'synthetic' is registered twice"):
        register_dataset(Other)
    assert get_dataset("synthetic") is not Other


def test_registering_the_same_class_again_is_harmless():
    cls = get_method("cca").cls
    assert register_method(cls) is cls
    assert get_method("cca").cls is cls


@pytest.mark.parametrize("bad", ["", "a/b"])
def test_a_plugin_name_that_is_empty_or_contains_a_slash_is_refused(bad):
    class Bad(Method):
        name = bad

    with pytest.raises(BenchError, match="needs a class attribute `name` without '/'"):
        register_method(Bad)


def test_an_unknown_method_name_is_answered_with_near_matches():
    with pytest.raises(UnknownNameError, match=r"unknown method 'label_regresion' \(did you mean label_regression"):
        get_method("label_regresion")


def test_an_unknown_dataset_name_is_answered_with_near_matches():
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'synthetc' \(did you mean synthetic"):
        get_dataset("synthetc")


def test_an_unknown_name_with_nothing_close_gets_no_suggestion():
    with pytest.raises(UnknownNameError) as err:
        get_method("zzzzzzzz")
    assert "did you mean" not in str(err.value)


def test_variants_are_listed_as_family_slash_variant_with_their_fixed_parameters():
    entries = method_entries()
    family, variant = entries["coretest_layered"], entries["coretest_layered/pinned"]
    assert family.variant is None and family.fixed == {}
    assert variant.family == "coretest_layered" and variant.variant == "pinned"
    assert variant.fixed == {"fixed_by_variant": 4}
    assert variant.description == "fixes fixed_by_variant=4"


def test_wildcard_matching_selects_names():
    names = ["pgnn_con", "pgnn_con/no_gan", "cca", "ignn_con/no_gan"]
    assert match(names, "*/no_gan") == ["pgnn_con/no_gan", "ignn_con/no_gan"]
    assert match(names, "pgnn*") == ["pgnn_con", "pgnn_con/no_gan"]


def test_a_plugin_that_fails_to_import_is_reported_with_its_file(tmp_path):
    folder = tmp_path / "methods"
    folder.mkdir()
    (folder / "broken.py").write_text("import a_module_that_does_not_exist_anywhere\n")
    with pytest.raises(BenchError, match=r"broken\.py failed to import: ModuleNotFoundError"):
        _import_folder(folder, "_coretest_broken_plugins")


def test_plugins_can_share_code_through_relative_imports(tmp_path):
    folder = tmp_path / "methods"
    (folder / "shared").mkdir(parents=True)
    (folder / "shared" / "__init__.py").write_text("")
    (folder / "shared" / "helpers.py").write_text("ANSWER = 42\n")
    (folder / "uses_shared.py").write_text("from .shared.helpers import ANSWER\n")
    (folder / "_private.py").write_text("raise RuntimeError('files starting with _ are not plugins')\n")
    _import_folder(folder, "_coretest_relative_plugins")
    assert sys.modules["_coretest_relative_plugins.uses_shared"].ANSWER == 42
    assert "_coretest_relative_plugins._private" not in sys.modules


def test_a_plugin_root_on_bench_plugin_path_is_discovered(tmp_path):
    # plugins load once per process, so ask a fresh interpreter
    script = ("import json, sys; from bench.registry import method_entries; e = method_entries(); "
              "print(json.dumps({'module': e['fixture_sleepy'].cls.__module__, 'cca': 'cca' in e, "
              "'datasets': 'datasets' in sys.modules}))")
    env = {**os.environ, "BENCH_PLUGIN_PATH": str(FIXTURE_ROOT)}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {"module": "_bench_plugins_1.methods.fixture_sleepy", "cca": True, "datasets": False}
