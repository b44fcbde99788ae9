"""Sweep files: YAML -> validated, fully resolved `RunSpec`s (nothing runs or is written here).

A sweep is datasets x methods (or variants) x parameter grids x seeds. Every value is checked
before the first run starts, with a message naming the file, the key and the fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import itertools
import json
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench import params as P
from bench.errors import BenchError, ConfigError
from bench.registry import MethodEntry, builtin_folder, get_dataset, get_method, load_plugins
from bench.splits import MissingSpec, SplitSpec

TOP_KEYS = {"name", "description", "device", "seeds", "split", "datasets", "methods", "overrides", "test_selected",
            "split_per_seed", "plugins"}
DATASET_KEYS = {"name", "label", "params", "split", "missing", "missing_policy", "optional"}
METHOD_KEYS = {"name", "label", "params", "grid", "params_from"}


@dataclass(frozen=True)
class RunSpec:
    """One fully resolved run: a dataset configuration, a method with all its parameters, a seed."""

    sweep: str
    dataset: str
    dataset_label: str
    dataset_params: dict[str, Any]
    split: dict[str, Any]
    missing: dict[str, Any] | None
    missing_policy: str
    method: str
    method_label: str
    family: str
    params: dict[str, Any]
    seed: int
    optional: bool = False
    code_version: str = ""
    test_selected: bool = False  # also measure the optimistic test-selected figure (see README)

    @property
    def key(self) -> str:
        """Run key: hash of the canonical resolved spec and the method's code version."""
        return run_key(self)

    def describe(self) -> str:
        """A short human-readable name of the run."""
        return f"{self.dataset_label} | {self.method_label} | seed {self.seed}"


def run_key(spec: RunSpec) -> str:
    """sha256 over the canonical JSON of what determines a result (not labels, not the device)."""
    payload = {
        "dataset": spec.dataset, "dataset_params": spec.dataset_params, "split": spec.split,
        "missing": spec.missing, "missing_policy": spec.missing_policy, "method": spec.method,
        "params": spec.params, "seed": spec.seed, "code": spec.code_version,
    }
    if spec.test_selected:
        payload["test_selected"] = True
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def plugin_modules(module: types.ModuleType) -> list[types.ModuleType]:
    """`module` and every module of the same plugin package it uses, transitively (e.g. methods/common)."""
    root = module.__name__.split(".")[0]
    seen: dict[str, types.ModuleType] = {}
    stack = [module]
    while stack:
        mod = stack.pop()
        if mod.__name__ in seen:
            continue
        seen[mod.__name__] = mod
        for value in vars(mod).values():
            name = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
            if isinstance(name, str) and name.split(".")[0] == root and name not in seen and name in sys.modules:
                stack.append(sys.modules[name])
    return [seen[k] for k in sorted(seen)]


def code_version(cls: type) -> str:
    """Hash of the plugin's source and of the plugin modules it uses: editing them invalidates its records."""
    module = inspect.getmodule(cls)
    if module is None:
        return hashlib.sha256(f"{cls.__module__}.{cls.__qualname__}".encode()).hexdigest()[:12]
    # sources only: module names depend on how (and in which order) plugin folders were discovered
    parts = []
    for mod in plugin_modules(module):
        try:
            parts.append(hashlib.sha256(inspect.getsource(mod).encode()).hexdigest())
        except (OSError, TypeError):
            parts.append(mod.__name__)
    return hashlib.sha256("".join(sorted(parts)).encode()).hexdigest()[:12]


@dataclass
class Sweep:
    """A parsed sweep: its name, device, the resolved runs and the datasets it will skip."""

    name: str
    path: Path
    device: str
    specs: list[RunSpec]
    description: str = ""
    skipped: dict[str, str] = field(default_factory=dict)
    plugins: list[Path] = field(default_factory=list)  # the plugin folders of its `plugins:` key (resolved)


class _Where:
    """Builds 'file: key.path' prefixes for messages."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, *keys: Any) -> str:
        return f"{self.path}: " + ".".join(str(k) for k in keys)


def _mapping(value: Any, where: str, what: str = "a mapping (key: value)") -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected {what}, got {type(value).__name__} {value!r}")
    return value


def _check_keys(d: dict, allowed: set[str], where: str) -> None:
    for key in d:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key '{key}'{P.near(str(key), allowed)}; "
                              f"allowed: {', '.join(sorted(allowed))}")


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


# Size limits: a YAML document whose aliases expand beyond this many nodes is refused (an alias bomb
# of a few hundred bytes would otherwise take minutes and gigabytes), and so is a sweep of more runs
# than `max_runs` (raise it with --max-runs) before any grid is expanded.
MAX_YAML_NODES = 100_000
MAX_RUNS = 10_000
MAX_NAME = 100


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate keys (YAML's last-one-wins hides typos)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
        seen: dict[Any, Any] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    mark = key_node.start_mark
                    raise ConfigError(f"{self.name}: line {mark.line + 1}, column {mark.column + 1}: duplicate key "
                                      f"'{_short(key)}' (first at line {seen[key] + 1}); keep one")
                seen[key] = key_node.start_mark.line
            except TypeError:  # an unhashable key: SafeLoader reports it below
                pass
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int], limit: int) -> int:
    """Nodes of the document once every alias is expanded (memoised on shared nodes; stops past limit)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = limit + 1  # a node that contains itself expands without end
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        total += _expanded_size(child, memo, limit)
        if total > limit:
            break
    memo[id(node)] = total
    return total


def _short(value: Any, limit: int = 60) -> str:
    """repr-like text of a value, cut to `limit` characters."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def read_yaml(path: Path) -> Any:
    """Safe-load a YAML file with one-line errors; duplicate keys and alias bombs are refused."""
    if not path.exists():
        shipped = ", ".join(builtin_sweeps())
        raise ConfigError(f"{path}: no such sweep file" + (f"; shipped sweeps (usable by name): {shipped}"
                                                            if shipped else ""))
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a sweep file")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: cannot read as UTF-8 text ({type(exc).__name__})") from None
    loader = _StrictLoader(text)
    loader.name = str(path)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise ConfigError(f"{path}: the YAML expands to more than {MAX_YAML_NODES} values through its aliases "
                              "(&anchor / *alias); write the values out or use fewer aliases")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{at}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()


def check_name(value: Any, where: str, what: str) -> str:
    """A sweep name or dataset label: it becomes part of file names, so no separators, dots first or NUL."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {what} must be a non-empty string")
    if len(value) > MAX_NAME:
        raise ConfigError(f"{where}: {what} is {len(value)} characters long; use at most {MAX_NAME}")
    bad = [c for c in value if c in '/\\' or ord(c) < 32 or ord(c) == 127]
    if bad or value.startswith(".") or value.strip() != value:
        raise ConfigError(f"{where}: {what} {_short(value)!r} cannot be part of a file name (no '/', '\\', "
                          "control characters, leading '.' or surrounding spaces); rename it")
    return value


def _count_runs(raw: dict, n_seeds: int, max_runs: int, path: Path) -> None:
    """Refuse a sweep of more than `max_runs` runs before any grid is expanded."""
    n_datasets = len(raw["datasets"]) if isinstance(raw.get("datasets"), list) else 1
    total = 0
    for m in raw["methods"] if isinstance(raw.get("methods"), list) else []:
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


def load_sweep(path: str | Path, device: str | None = None, cache_root: Path | str = Path("results/cache"),
               overrides: list[str] | tuple[str, ...] = (), multirun: bool = False,
               only_methods: tuple[str, ...] = (), only_datasets: tuple[str, ...] = (),
               max_runs: int = MAX_RUNS) -> Sweep:
    """Parse and validate a sweep file into resolved run specs.

    `cache_root` is where dataset plugins keep prepared files (`<cache_root>/<dataset>`); it is
    consulted to decide which `optional` datasets are unavailable and skipped. `overrides` are
    command-line `key=value` tokens (see `bench.overrides`); `only_methods` / `only_datasets` are
    wildcard filters that keep a subset of the runs.
    """
    from bench import overrides as O

    path = sweep_path(path)
    raw = read_yaml(path)
    parsed = [O.parse(token, multirun) for token in overrides]
    raw = O.apply(raw, parsed, TOP_KEYS, DATASET_KEYS, METHOD_KEYS)
    at = _Where(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a sweep file must be a mapping with 'datasets' and 'methods' keys")
    _check_keys(raw, TOP_KEYS, at("(top level)").rstrip("."))
    plugins = _plugin_roots(raw.get("plugins"), path, at)
    for required in ("datasets", "methods"):
        if required not in raw:
            raise ConfigError(f"{path}: missing required key '{required}'; see the sweep reference in README.md")
    name = check_name(raw.get("name", path.stem), at("name"), "the sweep name")
    dev = device or raw.get("device", "auto")
    if not isinstance(dev, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]{1,3})?", dev):
        raise ConfigError(f"{at('device')}: {_short(dev)!r} is not one of auto, cpu, cuda, cuda:N, mps")
    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in seeds)):
        raise ConfigError(f"{at('seeds')}: expected a non-empty list of non-negative integers below 2^63, "
                          f"got {_short(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{at('seeds')}: duplicate seeds {seeds}")
    split_per_seed = raw.get("split_per_seed", False)
    if not isinstance(split_per_seed, bool):
        raise ConfigError(f"{at('split_per_seed')}: expected true/false")
    test_selected = raw.get("test_selected", False)
    if not isinstance(test_selected, bool):
        raise ConfigError(f"{at('test_selected')}: expected true/false")
    default_split = _mapping(raw.get("split"), at("split"))
    P.build(SplitSpec, default_split, at("split"))
    overrides = _mapping(raw.get("overrides"), at("overrides"))
    datasets = raw["datasets"]
    methods = raw["methods"]
    if not isinstance(datasets, list) or not datasets:
        raise ConfigError(f"{at('datasets')}: expected a non-empty list of datasets")
    if not isinstance(methods, list) or not methods:
        raise ConfigError(f"{at('methods')}: expected a non-empty list of methods")
    _count_runs(raw, len(seeds), max_runs, path)
    method_items = [_parse_method(m, at("methods", i)) for i, m in enumerate(methods)]
    all_params = {f.name for item in method_items for f in dataclasses.fields(item[0].cls.Params)}
    used_names = {d if isinstance(d, str) else d.get("name") for d in datasets if isinstance(d, (str, dict))}
    used_names |= {d.get("label") for d in datasets if isinstance(d, dict) and d.get("label")}
    for key in overrides:
        if key not in used_names:
            raise ConfigError(f"{at('overrides', key)}: no dataset of this sweep is named or labelled '{key}'"
                              f"{P.near(str(key), [str(n) for n in used_names if n])}")

    specs: list[RunSpec] = []
    skipped: dict[str, str] = {}
    labels_seen: set[str] = set()
    for i, d in enumerate(datasets):
        where = at("datasets", i)
        d, dcls = _entry(d, DATASET_KEYS, where, get_dataset)
        dparams = P.as_dict(P.build(dcls.Params, _mapping(d.get("params"), f"{where}.params"), f"{where}.params"))
        split = P.as_dict(P.build(SplitSpec, {**default_split, **_mapping(d.get("split"), f"{where}.split")},
                                  f"{where}.split"))
        missing = None
        if d.get("missing") is not None:
            mspec = P.build(MissingSpec, _mapping(d["missing"], f"{where}.missing"), f"{where}.missing")
            missing = None if mspec.complete else P.as_dict(mspec)
        policy = d.get("missing_policy", "drop")
        if policy not in ("drop", "zero"):
            raise ConfigError(f"{where}.missing_policy: {policy!r} is not one of drop, zero")
        optional = d.get("optional", False)
        if not isinstance(optional, bool):
            raise ConfigError(f"{where}.optional: expected true/false")
        label = check_name(d.get("label") or d["name"], f"{where}.label", "the dataset label")
        if label in labels_seen:
            raise ConfigError(f"{where}.label: '{label}' is used twice; give each dataset entry a distinct label")
        labels_seen.add(label)
        # overrides by dataset name apply first, then those by this entry's label
        layers = [(key, _mapping(overrides.get(key), at("overrides", key)))
                  for key in dict.fromkeys([d["name"], label]) if key in overrides]
        for key, layer in layers:
            for mname, values in layer.items():
                _mapping(values, at("overrides", key, mname))
                if mname == "*":
                    for pname in values:
                        if pname not in all_params:
                            raise ConfigError(f"{at('overrides', key, '*', pname)}: no method of this sweep has a "
                                              f"parameter '{pname}'{P.near(str(pname), all_params)}")
                    continue
                try:
                    get_method(mname)
                except BenchError as exc:
                    raise ConfigError(f"{at('overrides', key, mname)}: {exc}") from None

        for (entry, mlabel, tuned, mparams, grid) in method_items:
            known = {f.name for f in dataclasses.fields(entry.cls.Params)} - set(entry.fixed)
            over = {**{k: v for k, v in _layered(layers, "*").items() if k in known},  # "*" applies where it fits
                    **_layered(layers, entry.family), **_layered(layers, entry.name)}
            for combo in grid:
                resolved = resolve_params(entry, d["name"], {**tuned, **over, **mparams, **combo},
                                          at("methods", mlabel))
                suffix = "".join(f" {k}={v}" for k, v in combo.items())
                for seed in seeds:
                    specs.append(RunSpec(
                        sweep=name, dataset=d["name"], dataset_label=label, dataset_params=dparams,
                        split={**split, "seed": seed} if split_per_seed else split, missing=missing,
                        missing_policy=policy, method=entry.name,
                        method_label=mlabel + suffix, family=entry.family, params=resolved, seed=seed,
                        optional=optional, code_version=code_version(entry.cls),
                        test_selected=test_selected))
        if optional:
            reason = dcls(get_dataset_params(dcls, dparams), cache_dir=Path(cache_root) / d["name"]).missing()
            if reason:
                skipped[label] = reason
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
    if only_methods or only_datasets:
        chosen = O.select(specs, tuple(only_methods), tuple(only_datasets))
        if not chosen:
            what = " and ".join(f"--{k} {' '.join(v)}" for k, v in (("method", only_methods),
                                                                     ("dataset", only_datasets)) if v)
            avail_m = ", ".join(dict.fromkeys(s.method_label for s in specs))
            avail_d = ", ".join(dict.fromkeys(s.dataset_label for s in specs))
            raise ConfigError(f"{path}: {what} selects no run; methods: {avail_m}; datasets: {avail_d}")
        specs = chosen
        labels = {s.dataset_label for s in specs}
        skipped = {k: v for k, v in skipped.items() if k in labels}
    return Sweep(name=name, path=path, device=dev, specs=specs, description=str(raw.get("description", "")),
                 skipped=skipped, plugins=plugins)


def _plugin_roots(value: Any, path: Path, at: _Where) -> list[Path]:
    """The `plugins:` folders (relative to the sweep file), imported now so the sweep can use their names."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{at('plugins')}: expected a list of plugin folders (each holding methods/ and/or "
                          f"datasets/), got {value!r}")
    roots = [(path.parent / v).resolve() for v in value]
    for i, root in enumerate(roots):
        load_plugins([root], asked_by=at("plugins", i))
    return roots


def _layered(layers: list[tuple[str, dict]], key: str) -> dict[str, Any]:
    """Merge the overrides for `key` across layers, later layers winning."""
    return {k: v for _, layer in layers for k, v in (layer.get(key) or {}).items()}


def get_dataset_params(dcls: type, values: dict[str, Any]) -> Any:
    """Rebuild a dataset's Params dataclass from resolved values."""
    return P.build(dcls.Params, values, dcls.name)


def _params_from(value: Any, entry: MethodEntry, where: str) -> dict[str, Any]:
    """Parameters saved by `bench tune` (a JSON file with a 'params' mapping)."""
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected the path of a JSON file written by `bench tune`")
    path = Path(value)
    if not path.exists():
        raise ConfigError(f"{where}: {path} does not exist; run `bench tune` first or fix the path")
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{where}: {path} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("params"), dict):
        raise ConfigError(f"{where}: {path} has no 'params' mapping; was it written by `bench tune`?")
    if doc.get("method") not in (None, entry.name, entry.family):
        raise ConfigError(f"{where}: {path} holds parameters of '{doc['method']}', not '{entry.name}'")
    return {k: v for k, v in doc["params"].items() if k not in entry.fixed}


def _entry(item: Any, allowed: set[str], where: str, lookup: Any) -> tuple[dict, Any]:
    """A datasets/methods item (a name or a mapping with 'name') checked, and its registry entry."""
    item = _mapping({"name": item} if isinstance(item, str) else item, where)
    _check_keys(item, allowed, where)
    if "name" not in item:
        raise ConfigError(f"{where}: missing required key 'name'")
    try:
        return item, lookup(item["name"])
    except BenchError as exc:
        raise ConfigError(f"{where}.name: {exc}") from None


def _parse_method(m: Any, where: str) -> tuple[MethodEntry, str, dict, dict, list[dict]]:
    """(entry, label, tuned params from params_from, params, grid points) of a methods item."""
    m, entry = _entry(m, METHOD_KEYS, where, get_method)
    params = _mapping(m.get("params"), f"{where}.params")
    tuned = {}
    if m.get("params_from") is not None:
        tuned = _params_from(m["params_from"], entry, f"{where}.params_from")
    grid_raw = _mapping(m.get("grid"), f"{where}.grid")
    axes = []
    for key, values in grid_raw.items():
        if not isinstance(values, list):
            raise ConfigError(f"{where}.grid.{key}: expected a list of values to try, got {values!r}")
        if not values:
            raise ConfigError(f"{where}.grid.{key}: empty grid; list at least one value")
        if key in params:
            raise ConfigError(f"{where}.grid.{key}: also set in params; keep one")
        axes.append([(key, v) for v in values])
    grid = [dict(c) for c in itertools.product(*axes)] if axes else [{}]
    label = m.get("label") or (f"{m['name']} (tuned)" if m.get("params_from") else m["name"])
    return entry, str(label), tuned, params, grid


def resolve_params(entry: MethodEntry, dataset: str, given: dict[str, Any], where: str) -> dict[str, Any]:
    """Params defaults < presets[dataset] < given < the variant's fixed values (conflicts are errors)."""
    for key, value in entry.fixed.items():
        if key in given and given[key] != value:
            raise ConfigError(f"{where}.params.{key}: '{entry.name}' fixes {key}={value!r}; "
                              f"remove it or use the family '{entry.family}'")
    merged = {**entry.cls.presets.get(dataset, {}), **given, **entry.fixed}
    params = P.build(entry.cls.Params, merged, f"{where}.params")
    return P.as_dict(params) if dataclasses.is_dataclass(params) else {}
