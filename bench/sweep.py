"""Sweep files: YAML -> validated, fully resolved `RunSpec`s (nothing runs or is written here).

A sweep is datasets x methods (or variants) x parameter grids x seeds. `load_sweep` reads it in
named steps: the file with the command-line assignments applied (`_read`), the top-level keys
(`_top_level`), the `overrides:` mapping (`_overrides`), each dataset entry and its expansion into
runs (`_expand`), uniqueness (`_check_unique`) and the `--method` / `--dataset` selection
(`_select`). Every value is checked before the first run starts, with a message naming the file,
the key and the fix.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.assignments import apply_assignments, parse_assignment
from bench.errors import BenchError, ConfigError
from bench.params import build, check_number, near
from bench.readers import read_yaml
from bench.registry import builtin_folder, get_method, load_plugins
from bench.spec import RunSpec, code_version
from bench.splits import SplitSpec
from bench.sweep_entries import (
    DATASET_KEYS,
    METHOD_KEYS,
    DatasetItem,
    MethodItem,
    Where,
    check_keys,
    check_name,
    get_dataset_params,
    mapping,
    parse_dataset,
    parse_method,
    resolve_params,
    short,
)

TOP_KEYS = {"name", "description", "device", "seeds", "split", "datasets", "methods", "overrides", "test_selected",
            "split_per_seed", "plugins"}
# A sweep of more than `max_runs` runs is refused before any grid is expanded (raise it with --max-runs).
MAX_RUNS = 10_000


@dataclass
class Sweep:
    """A parsed sweep: its name, device, the resolved runs and the datasets it will skip.

    `resolved` is the sweep file's content after the command-line `assignments` were applied: with
    them, it is what the runs were made from (stored on the MLflow parent run and in each record).
    """

    name: str
    path: Path
    device: str
    specs: list[RunSpec]
    description: str = ""
    skipped: dict[str, str] = field(default_factory=dict)
    plugins: list[Path] = field(default_factory=list)  # the plugin folders of its `plugins:` key (resolved)
    assignments: tuple[str, ...] = ()
    resolved: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Top:
    """The checked top-level keys of a sweep file."""

    name: str
    device: str
    seeds: list[int]
    split: dict[str, Any]
    split_per_seed: bool
    test_selected: bool
    plugins: list[Path]


def builtin_sweeps() -> dict[str, Path]:
    """The sweeps shipped with bench (the project's sweeps/ folder), by name."""
    folder = builtin_folder("sweeps")
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder else {}


def sweep_path(path: str | Path) -> Path:
    """`path`, or the shipped sweep of that name when `path` is a bare name that is not a file (`quick`)."""
    path = Path(path)
    if not path.exists() and len(path.parts) == 1 and path.suffix == "":
        return builtin_sweeps().get(path.name, path)
    return path


def load_sweep(path: str | Path, device: str | None = None, cache_root: Path | str = Path("results/cache"),
               assignments: list[str] | tuple[str, ...] = (), multirun: bool = False,
               only_methods: tuple[str, ...] = (), only_datasets: tuple[str, ...] = (),
               max_runs: int = MAX_RUNS) -> Sweep:
    """Parse and validate a sweep file into resolved run specs.

    `cache_root` is where dataset plugins keep prepared files (`<cache_root>/<dataset>`); it is
    consulted to decide which `optional` datasets are unavailable and skipped. `assignments` are
    command-line `KEY=VALUE` tokens (see `bench.assignments`), `multirun` reads comma-separated
    values as grids; `only_methods` / `only_datasets` are wildcard filters that keep a subset.
    """
    path = sweep_path(path)
    raw = _read(path, assignments, multirun)
    at = Where(path)
    top = _top_level(raw, path, device)
    _count_runs(raw, len(top.seeds), max_runs, path)
    methods = [parse_method(m, at("methods", i)) for i, m in enumerate(raw["methods"])]
    overrides = _overrides(raw, at, methods)
    specs: list[RunSpec] = []
    skipped: dict[str, str] = {}
    labels: set[str] = set()
    for i, d in enumerate(raw["datasets"]):
        item = parse_dataset(d, at("datasets", i), top.split)
        if item.label in labels:
            raise ConfigError(f"{at('datasets', i)}.label: '{item.label}' is used twice; give each dataset entry a "
                              "distinct label")
        labels.add(item.label)
        specs += _expand(item, methods, _layers(overrides, item, at), top, at)
        if item.optional:
            plugin = item.cls(get_dataset_params(item.cls, item.params), cache_dir=Path(cache_root) / item.name)
            reason = plugin.missing()
            if reason:
                skipped[item.label] = reason
    _check_unique(specs, path, at)
    specs, skipped = _select(specs, skipped, only_methods, only_datasets, path)
    return Sweep(name=top.name, path=path, device=top.device, specs=specs, description=raw.get("description", ""),
                 skipped=skipped, plugins=top.plugins, assignments=tuple(assignments), resolved=raw)


def _read(path: Path, assignments: list[str] | tuple[str, ...], multirun: bool) -> dict[str, Any]:
    """The sweep file's mapping with the command-line assignments applied."""
    if not path.exists():
        shipped = ", ".join(builtin_sweeps())
        raise ConfigError(f"{path}: no such sweep file" + (f"; shipped sweeps (usable by name): {shipped}"
                                                            if shipped else ""))
    raw = read_yaml(path, "sweep file")
    parsed = [parse_assignment(token, multirun) for token in assignments]
    raw = apply_assignments(raw, parsed, TOP_KEYS, DATASET_KEYS, METHOD_KEYS)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a sweep file must be a mapping with 'datasets' and 'methods' keys")
    return raw


def _top_level(raw: dict[str, Any], path: Path, device: str | None) -> _Top:
    """Check the top-level keys (and import the `plugins:` folders, so entries can use their names)."""
    at = Where(path)
    check_keys(raw, TOP_KEYS, at("(top level)").rstrip("."))
    plugins = _plugin_roots(raw.get("plugins"), path, at)
    for required in ("datasets", "methods"):
        if required not in raw:
            raise ConfigError(f"{path}: missing required key '{required}'; see the sweep file reference")
    name = check_name(raw.get("name", path.stem), at("name"), "the sweep name")
    dev = device if device is not None else raw.get("device", "auto")
    where_dev = "--device" if device is not None else at("device")
    if not isinstance(dev, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]{1,3})?", dev):
        raise ConfigError(f"{where_dev}: {short(repr(dev))} is not one of auto, cpu, cuda, cuda:N, mps")
    seeds = _seeds(raw.get("seeds", [0]), at("seeds"))
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{at('description')}: expected text, got {short(repr(description))}")
    flags = {}
    for key in ("split_per_seed", "test_selected"):
        flags[key] = raw.get(key, False)
        if not isinstance(flags[key], bool):
            raise ConfigError(f"{at(key)}: expected true/false")
    split = mapping(raw.get("split"), at("split"))
    build(SplitSpec, split, at("split"))
    for key, what in (("datasets", "datasets"), ("methods", "methods")):
        if not isinstance(raw[key], list) or not raw[key]:
            raise ConfigError(f"{at(key)}: expected a non-empty list of {what}")
    return _Top(name, dev, seeds, split, flags["split_per_seed"], flags["test_selected"], plugins)


def _seeds(value: Any, where: str) -> list[int]:
    """The training seeds: a non-empty list of distinct non-negative 64-bit integers (one alone is a list)."""
    values = value if isinstance(value, list) else [value]
    try:
        if not values:
            raise ConfigError("empty")
        seeds = [int(check_number(s, where, integer=True, low=0)) for s in values]
    except ConfigError:
        raise ConfigError(f"{where}: expected a non-empty list of non-negative integers below 2^63, got "
                          f"{short(value)}") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: duplicate seeds {short(seeds)}")
    return seeds


def _plugin_roots(value: Any, path: Path, at: Where) -> list[Path]:
    """The `plugins:` folders (relative to the sweep file), imported now so the sweep can use their names."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{at('plugins')}: expected a list of plugin folders (each holding methods/ and/or "
                          f"datasets/), got {short(value)!r}")
    roots = [(path.parent / Path(v).expanduser()).resolve() for v in value]
    for i, root in enumerate(roots):
        load_plugins([root], asked_by=at("plugins", i))
    return roots


def _count_runs(raw: dict, n_seeds: int, max_runs: int, path: Path) -> None:
    """Refuse a sweep of more than `max_runs` runs before any grid is expanded."""
    n_datasets = len(raw["datasets"])
    total = 0
    for m in raw["methods"]:
        points = 1
        grid = m.get("grid") if isinstance(m, dict) else None
        if isinstance(grid, dict):
            for values in grid.values():
                points *= len(values) if isinstance(values, list) and values else 1
        total += points
    total *= n_datasets * n_seeds
    if total > max_runs:
        raise ConfigError(f"{path}: the sweep expands to {total} runs, more than the limit of {max_runs}; "
                          "shrink the grids or pass --max-runs N to allow more")


def _overrides(raw: dict[str, Any], at: Where, methods: list[MethodItem]) -> dict[str, dict]:
    """The `overrides:` mapping (dataset name or label -> method, family or "*" -> parameters), checked:
    every key names a dataset entry, every method exists, a "*" parameter belongs to some method."""
    overrides = mapping(raw.get("overrides"), at("overrides"))
    datasets = raw["datasets"]
    used = {d if isinstance(d, str) else d.get("name") for d in datasets if isinstance(d, (str, dict))}
    used |= {d.get("label") for d in datasets if isinstance(d, dict) and d.get("label")}
    all_params = {name for item in methods for name in item.known | set(item.entry.fixed)}
    for key, layer in overrides.items():
        if key not in used:
            raise ConfigError(f"{at('overrides', key)}: no dataset of this sweep is named or labelled '{key}'"
                              f"{near(str(key), [str(n) for n in used if n])}")
        for mname, values in mapping(layer, at("overrides", key)).items():
            mapping(values, at("overrides", key, mname))
            if mname == "*":
                for pname in values:
                    if pname not in all_params:
                        raise ConfigError(f"{at('overrides', key, '*', pname)}: no method of this sweep has a "
                                          f"parameter '{pname}'{near(str(pname), all_params)}")
                continue
            try:
                get_method(mname)
            except BenchError as exc:
                raise ConfigError(f"{at('overrides', key, mname)}: {exc}") from None
    return overrides


def _layers(overrides: dict[str, dict], item: DatasetItem, at: Where) -> list[dict]:
    """The `overrides:` layers of one dataset entry: by its name first, then by its label."""
    return [mapping(overrides[key], at("overrides", key)) for key in dict.fromkeys([item.name, item.label])
            if key in overrides]


def _layered(layers: list[dict], key: str) -> dict[str, Any]:
    """The values for `key` (a method, family or "*") across layers, later layers winning."""
    return {k: v for layer in layers for k, v in (layer.get(key) or {}).items()}


def _expand(item: DatasetItem, methods: list[MethodItem], layers: list[dict], top: _Top, at: Where) -> list[RunSpec]:
    """The runs of one dataset entry: every method x grid point x seed, parameters resolved."""
    specs = []
    for m in methods:
        over = {**{k: v for k, v in _layered(layers, "*").items() if k in m.known},  # "*" applies where it fits
                **_layered(layers, m.entry.family), **_layered(layers, m.entry.name)}
        version = code_version(m.entry.cls)
        for combo in m.grid:
            given = {**m.tuned, **over, **m.params, **combo}
            params = resolve_params(m.entry, item.name, given, at("methods", m.label))
            label = m.label + "".join(f" {k}={v}" for k, v in combo.items())
            for seed in top.seeds:
                specs.append(RunSpec(
                    sweep=top.name, dataset=item.name, dataset_label=item.label, dataset_params=item.params,
                    split={**item.split, "seed": seed} if top.split_per_seed else item.split, missing=item.missing,
                    missing_policy=item.missing_policy, method=m.entry.name, method_label=label,
                    family=m.entry.family, params=params, seed=seed, optional=item.optional,
                    code_version=version, test_selected=top.test_selected))
    return specs


def _check_unique(specs: list[RunSpec], path: Path, at: Where) -> None:
    """No run twice, and no two entries sharing a label on one dataset (the report could not tell them apart)."""
    keys = [s.key for s in specs]
    if len(set(keys)) != len(keys):
        dup = next(s for s in specs if keys.count(s.key) > 1)
        raise ConfigError(f"{path}: the run '{dup.describe()}' appears twice (same dataset, method, parameters "
                          "and seed); remove the duplicate entry")
    names = [(s.dataset_label, s.method_label, s.seed) for s in specs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"{at('methods')}: two entries are both labelled '{dup[1]}' on dataset '{dup[0]}'; "
                          "give each a distinct 'label' so the report can tell them apart")


def select_specs(specs: list[RunSpec], methods: tuple[str, ...] = (), datasets: tuple[str, ...] = ()
                 ) -> list[RunSpec]:
    """The specs whose method (name or label) and dataset (name or label) match any of the patterns."""
    def hit(values: list[str], patterns: tuple[str, ...]) -> bool:
        return not patterns or any(fnmatch.fnmatchcase(v, p) for v in values for p in patterns)

    return [s for s in specs
            if hit([s.method, s.method_label], methods) and hit([s.dataset, s.dataset_label], datasets)]


def _select(specs: list[RunSpec], skipped: dict[str, str], only_methods: tuple[str, ...],
            only_datasets: tuple[str, ...], path: Path) -> tuple[list[RunSpec], dict[str, str]]:
    """Apply the --method / --dataset filters; selecting nothing is an error listing what exists."""
    if not (only_methods or only_datasets):
        return specs, skipped
    chosen = select_specs(specs, tuple(only_methods), tuple(only_datasets))
    if not chosen:
        what = " and ".join(f"--{k} {' '.join(v)}" for k, v in (("method", only_methods),
                                                                 ("dataset", only_datasets)) if v)
        avail_m = ", ".join(dict.fromkeys(s.method_label for s in specs))
        avail_d = ", ".join(dict.fromkeys(s.dataset_label for s in specs))
        raise ConfigError(f"{path}: {what} selects no run; methods: {avail_m}; datasets: {avail_d}")
    labels = {s.dataset_label for s in chosen}
    return chosen, {k: v for k, v in skipped.items() if k in labels}
