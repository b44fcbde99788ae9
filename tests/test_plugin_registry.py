"""Registries: plugin folders imported under a private name, duplicates refused, near matches offered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
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


BENCH = [sys.executable, "-c", "from bench.cli import main; main()"]


def _bench(*args, cwd, env=None, timeout=120):
    """`bench ARGS` in a fresh interpreter (plugins load once per process)."""
    return subprocess.run([*BENCH, *map(str, args)], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def _plugin_root(folder: Path, files: dict[str, str]) -> Path:
    """A plugin root with the given files (relative path -> source)."""
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(textwrap.dedent(text))
    return folder


def _method_source(name: str, description: str) -> str:
    return f"""
        from bench.method import Method
        from bench.registry import register_method


        @register_method
        class Plugin(Method):
            name = "{name}"
            description = "{description}"
        """


def _lines(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.split()[:1] == [name]]


def test_a_plugin_root_on_bench_plugin_path_is_discovered_and_listed_with_its_file(tmp_path):
    script = ("import json, sys; from bench.registry import method_entries; e = method_entries(); "
              "print(json.dumps({'module': e['fixture_sleepy'].cls.__module__, 'cca': 'cca' in e, "
              "'origin': str(e['fixture_sleepy'].origin), 'datasets': 'datasets' in sys.modules}))")
    env = {**os.environ, "BENCH_PLUGIN_PATH": str(FIXTURE_ROOT)}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["module"].startswith("_bench_user_") and found["module"].endswith(".methods.fixture_sleepy")
    assert found["origin"] == f"path {(FIXTURE_ROOT / 'methods' / 'fixture_sleepy.py').resolve()}"
    assert found["cca"] is True and found["datasets"] is False


def test_no_command_imports_the_methods_or_datasets_folders_of_the_current_directory(tmp_path):
    # a research folder whose helper scripts have side effects: importing them writes a file
    marker = tmp_path / "imported.txt"
    side_effect = f"from pathlib import Path\nPath({str(marker)!r}).write_text(__name__)\n"
    _plugin_root(tmp_path, {"datasets/helper.py": side_effect, "methods/x.py": side_effect,
                            "datasets/common/__init__.py": side_effect})
    (tmp_path / "sweep.yaml").write_text("name: here\ndatasets: [{name: synthetic, params: {n: 60}}]\n"
                                         "methods: [label_regression]\n")
    commands = [["list", "methods"], ["list", "datasets"], ["run", "sweep.yaml", "--dry-run"],
                ["run", "sweep.yaml", "--no-mlflow"], ["report", "here"], ["report", "sweep.yaml"],
                ["data", "check", "synthetic", "--param", "n=60"]]
    script = textwrap.dedent(f"""
        from bench.cli import main
        for args in {commands!r}:
            try:
                main(args, standalone_mode=False)
            except SystemExit as exc:
                print("exit", args, exc.code)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert "exit" not in out.stdout, out.stdout + out.stderr  # every command succeeded
    assert "synthetic | label_regression | seed 0" in out.stdout and "cca" in out.stdout
    assert not marker.exists(), f"imported: {marker.read_text()}"


def test_a_user_plugin_with_a_builtin_name_overrides_it_with_one_line(tmp_path):
    root = _plugin_root(tmp_path / "mine", {"methods/my_cca.py": _method_source("cca", "my own CCA")})
    out = _bench("list", "methods", "--plugins", root, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    file = (root / "methods" / "my_cca.py").resolve()
    assert out.stderr.splitlines() == [f"bench: method 'cca' from path {file} overrides the built-in one"]
    assert _lines(out.stdout, "cca") == [f"{'cca':28s} my own CCA  (path {file})"]
    assert _lines(out.stdout, "label_regression")[0].endswith("(built-in)")


def test_two_user_plugins_claiming_one_name_are_an_error(tmp_path):
    a = _plugin_root(tmp_path / "a", {"methods/one.py": _method_source("coretest_clash", "first")})
    b = _plugin_root(tmp_path / "b", {"methods/two.py": _method_source("coretest_clash", "second")})
    out = _bench("list", "methods", "--plugins", a, cwd=tmp_path, env={"BENCH_PLUGIN_PATH": str(b)})
    assert out.returncode == 2
    assert len(out.stderr.splitlines()) == 1, out.stderr
    assert "method name 'coretest_clash' is registered twice" in out.stderr
    assert str((a / "methods" / "one.py").resolve()) in out.stderr
    assert str((b / "methods" / "two.py").resolve()) in out.stderr


def test_the_same_plugin_folder_reached_three_ways_is_loaded_once(tmp_path):
    root = _plugin_root(tmp_path / "plug", {"methods/once.py": _method_source("coretest_once", "loaded once")})
    (tmp_path / "link").symlink_to(root, target_is_directory=True)
    (tmp_path / "pyproject.toml").write_text('[tool.bench]\nplugins = ["link"]\n')
    out = _bench("list", "methods", "coretest_*", "--plugins", root, "--plugins", tmp_path / "link", cwd=tmp_path,
                 env={"BENCH_PLUGIN_PATH": f"{root}{os.pathsep}{root}"})
    assert out.returncode == 0, out.stderr
    # the only stderr line names the file that declared a plugin folder (issue 20, class 13)
    assert out.stderr.splitlines() == [f"bench: importing plugins from {tmp_path.resolve() / 'link'} (declared by "
                                       f"[tool.bench] in {tmp_path.resolve() / 'pyproject.toml'})"]
    assert [line.split()[0] for line in out.stdout.splitlines()] == ["coretest_once"]


def test_tool_bench_plugins_in_the_nearest_pyproject_are_loaded_relative_to_it(tmp_path):
    _plugin_root(tmp_path / "project" / "plug", {"datasets/mine.py": """
        from bench.dataset import Dataset
        from bench.registry import register_dataset


        @register_dataset
        class Mine(Dataset):
            name = "coretest_projectdata"
            description = "declared by the project"
        """})
    (tmp_path / "project" / "pyproject.toml").write_text('[project]\nname = "research"\n\n'
                                                         '[tool.bench]\nplugins = ["plug"]\n')
    (tmp_path / "project" / "notes" / "deep").mkdir(parents=True)
    out = _bench("list", "datasets", cwd=tmp_path / "project" / "notes" / "deep")
    assert out.returncode == 0, out.stderr
    file = (tmp_path / "project" / "plug" / "datasets" / "mine.py").resolve()
    assert _lines(out.stdout, "coretest_projectdata") == [f"{'coretest_projectdata':28s} declared by the project  "
                                                          f"(path {file})"]
    # outside the project nothing is declared
    assert "coretest_projectdata" not in _bench("list", "datasets", cwd=tmp_path).stdout


def test_a_bad_tool_bench_section_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.bench]\nplugins = "plug"\n')
    out = _bench("list", "methods", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [f"error: {tmp_path.resolve() / 'pyproject.toml'}: [tool.bench] plugins must be "
                                       "a list of folder paths (strings), got 'plug'"]


def test_a_sweep_plugins_key_is_relative_to_the_sweep_file(tmp_path):
    _plugin_root(tmp_path / "plug", {"methods/mine.py": """
        import numpy as np

        from bench.method import Method
        from bench.registry import register_method


        @register_method
        class Mine(Method):
            name = "coretest_sweepplugin"
            description = "declared by the sweep"
        """})
    (tmp_path / "sweeps").mkdir()
    sweep = tmp_path / "sweeps" / "s.yaml"
    sweep.write_text("plugins: [../plug]\ndatasets: [{name: synthetic, params: {n: 60}}]\n"
                     "methods: [coretest_sweepplugin]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = _bench("run", sweep, "--dry-run", cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    assert "synthetic | coretest_sweepplugin | seed 0" in out.stdout
    sweep.write_text("plugins: [../nowhere]\ndatasets: [synthetic]\nmethods: [cca]\n")
    out = _bench("run", sweep, "--dry-run", cwd=elsewhere)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [f"error: {sweep}: plugins.0: plugin folder {tmp_path / 'nowhere'} does not "
                                       "exist (or is not a folder)"]


def test_a_plugin_folder_without_methods_or_datasets_is_refused(tmp_path):
    out = _bench("list", "methods", "--plugins", tmp_path, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [f"error: --plugins: plugin folder {tmp_path} has no methods/ or datasets/ "
                                       "folder; put plugin files in <folder>/methods/*.py or <folder>/datasets/*.py"]


def test_a_shipped_sweep_runs_by_name_from_any_folder(tmp_path):
    out = _bench("run", "smoke", "--dry-run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "runs to do" in out.stdout.splitlines()[-1]
    assert not (tmp_path / "results").exists()


def test_every_plugin_subpackage_is_listed_in_the_distribution():
    import tomllib

    setup = tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = setup["package-dir"]
    listed = set()
    for package in setup["packages"]:  # the folder each package comes from, by the longest package-dir prefix
        base = max((k for k in dirs if package == k or package.startswith(k + ".")), key=len, default="")
        listed.add("/".join([dirs[base], *package[len(base):].split(".")[1:]]) if base else package.replace(".", "/"))
    folders = {d.parent.relative_to(PROJECT).as_posix() for kind in ("methods", "datasets")
               for d in (PROJECT / kind).rglob("*.py")}
    assert folders <= listed, f"add to [tool.setuptools] packages: {sorted(folders - listed)}"
