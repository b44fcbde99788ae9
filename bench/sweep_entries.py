"""The entries of a sweep file: a `datasets:` item and a `methods:` item, each checked and
resolved, and the precedence of a method's parameter values (`resolve_params`).

Every message names the file and the key path (`sweep.yaml: methods.0.params.lr: ...`).
"""

from __future__ import annotations

import dataclasses
import itertools
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError, ConfigError
from bench.params import as_dict, build, near, short
from bench.readers import read_json
from bench.registry import MethodEntry, get_dataset, get_method
from bench.splits import MissingSpec, SplitSpec

DATASET_KEYS = {"name", "label", "params", "split", "missing", "missing_policy", "optional"}
METHOD_KEYS = {"name", "label", "params", "grid", "params_from"}
MAX_NAME = 100


class Where:
    """Builds 'file: key.path' prefixes for messages."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, *keys: Any) -> str:
        return f"{self.path}: " + ".".join(str(k) for k in keys)


def mapping(value: Any, where: str, what: str = "a mapping (key: value)") -> dict:
    """`value` as a dict ({} for None), or a ConfigError naming `where`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected {what}, got {type(value).__name__} {short(repr(value))}")
    return value


def check_keys(d: dict, allowed: set[str], where: str) -> None:
    """Every key of `d` is one of `allowed` (a near match is suggested)."""
    for key in d:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key '{short(key)}'{near(str(key), allowed)}; "
                              f"allowed: {', '.join(sorted(allowed))}")


def _invisible(ch: str) -> bool:
    """Control and format characters (newline, tab, NUL, DEL, bidi overrides, zero-width marks, line
    separators): they break file names, log lines, MLflow names and tables, or hide what a name says."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def check_label(value: Any, where: str, what: str, max_len: int = MAX_NAME) -> str:
    """A display name (a method label): a non-empty string of at most `max_len` characters without
    control or format characters or surrounding spaces."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {what} must be a non-empty string, got {short(repr(value))}")
    if len(value) > max_len:
        raise ConfigError(f"{where}: {what} is {len(value)} characters long; use at most {max_len}")
    if any(_invisible(c) for c in value) or value.strip() != value:
        raise ConfigError(f"{where}: {what} {short(ascii(value))} holds control characters (newline, tab, ...) or "
                          "surrounding spaces; use printable characters")
    return value


def check_name(value: Any, where: str, what: str) -> str:
    """A sweep name or dataset label: it becomes part of file names, so no separators, dots first, or
    control characters (see `check_label`)."""
    check_label(value, where, what)
    if any(c in "/\\" for c in value) or value.startswith("."):
        raise ConfigError(f"{where}: {what} {short(value)!r} cannot be part of a file name (no '/', '\\', "
                          "control characters, leading '.' or surrounding spaces); rename it")
    return value


def _entry(item: Any, allowed: set[str], where: str, lookup: Any) -> tuple[dict, Any]:
    """A datasets/methods item (a name or a mapping with 'name') checked, and its registry entry."""
    item = mapping({"name": item} if isinstance(item, str) else item, where)
    check_keys(item, allowed, where)
    if "name" not in item:
        raise ConfigError(f"{where}: missing required key 'name'")
    try:
        return item, lookup(item["name"])
    except BenchError as exc:
        raise ConfigError(f"{where}.name: {exc}") from None


# --- datasets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetItem:
    """A checked `datasets:` entry: plugin, label, parameters, split, missing protocol."""

    name: str
    cls: type
    label: str
    params: dict[str, Any]
    split: dict[str, Any]
    missing: dict[str, Any] | None
    missing_policy: str
    optional: bool


def parse_dataset(d: Any, where: str, default_split: dict[str, Any]) -> DatasetItem:
    """One `datasets:` entry, every value checked (the split is the sweep's `split:` updated by the entry's)."""
    d, dcls = _entry(d, DATASET_KEYS, where, get_dataset)
    dparams = as_dict(build(dcls.Params, mapping(d.get("params"), f"{where}.params"), f"{where}.params"))
    split = as_dict(build(SplitSpec, {**default_split, **mapping(d.get("split"), f"{where}.split")},
                          f"{where}.split"))
    missing = None
    if d.get("missing") is not None:
        mspec = build(MissingSpec, mapping(d["missing"], f"{where}.missing"), f"{where}.missing")
        missing = None if mspec.complete else as_dict(mspec)
    policy = d.get("missing_policy", "drop")
    if not isinstance(policy, str) or policy not in ("drop", "zero"):
        raise ConfigError(f"{where}.missing_policy: {short(repr(policy))} is not one of drop, zero")
    optional = d.get("optional", False)
    if not isinstance(optional, bool):
        raise ConfigError(f"{where}.optional: expected true/false")
    label = check_name(d["label"] if "label" in d else d["name"], f"{where}.label", "the dataset label")
    return DatasetItem(d["name"], dcls, label, dparams, split, missing, policy, optional)


def get_dataset_params(dcls: type, values: dict[str, Any]) -> Any:
    """Rebuild a dataset's Params dataclass from resolved values."""
    return build(dcls.Params, values, dcls.name)


# --- methods -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodItem:
    """A checked `methods:` entry: registry entry, label, tuned values (params_from), params, grid points."""

    entry: MethodEntry
    label: str
    tuned: dict[str, Any]
    params: dict[str, Any]
    grid: list[dict[str, Any]]

    @property
    def known(self) -> set[str]:
        """Parameters an override may set (the family's, less those the variant fixes)."""
        return {f.name for f in dataclasses.fields(self.entry.cls.Params)} - set(self.entry.fixed)


def parse_method(m: Any, where: str) -> MethodItem:
    """One `methods:` entry, with its `params_from` file read and its grid expanded."""
    m, entry = _entry(m, METHOD_KEYS, where, get_method)
    params = mapping(m.get("params"), f"{where}.params")
    tuned = {}
    if m.get("params_from") is not None:
        tuned = _params_from(m["params_from"], entry, f"{where}.params_from")
    grid_raw = mapping(m.get("grid"), f"{where}.grid")
    axes = []
    for key, values in grid_raw.items():
        if not isinstance(values, list):
            raise ConfigError(f"{where}.grid.{short(key)}: expected a list of values to try, got {short(repr(values))}")
        if not values:
            raise ConfigError(f"{where}.grid.{key}: empty grid; list at least one value")
        if key in params:
            raise ConfigError(f"{where}.grid.{key}: also set in params; keep one")
        axes.append([(key, v) for v in values])
    grid = [dict(c) for c in itertools.product(*axes)] if axes else [{}]
    if "label" in m:
        value = m["label"]  # a number is a fine label (`label: 0.1` for a learning rate): YAML made it a number
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        label = check_label(str(value) if number else value, f"{where}.label", "the method label")
    else:
        label = f"{m['name']} (tuned)" if m.get("params_from") else m["name"]
    return MethodItem(entry, label, tuned, params, grid)


def _params_from(value: Any, entry: MethodEntry, where: str) -> dict[str, Any]:
    """Parameters saved by `bench tune` (a JSON file with a 'params' mapping)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected the path of a JSON file written by `bench tune`")
    path = Path(value).expanduser()
    if not path.exists():
        raise ConfigError(f"{where}: {path} does not exist; run `bench tune` first or fix the path")
    try:
        doc = read_json(path, "parameters file")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("params"), dict):
        raise ConfigError(f"{where}: {path} has no 'params' mapping; was it written by `bench tune`?")
    if doc.get("method") not in (None, entry.name, entry.family):
        raise ConfigError(f"{where}: {path} holds parameters of '{short(doc['method'])}', not '{entry.name}'")
    return {k: v for k, v in doc["params"].items() if k not in entry.fixed}


def resolve_params(entry: MethodEntry, dataset: str, given: dict[str, Any], where: str) -> dict[str, Any]:
    """Every parameter of a run of `entry` on `dataset`, checked, from the layers (later wins):

    1. the method's `Params` defaults;
    2. `presets[dataset]` of the method (e.g. the release's values for a standard benchmark);
    3. `given`, which the sweep builds from, in order: the `params_from` file (tuned values),
       the sweep's `overrides:` mapping for the dataset (`"*"`, then the family, then the exact
       name; by dataset name, then by label), the entry's `params`, then its grid point;
    4. the values the variant fixes (giving a fixed parameter another value is an error).
    Command-line assignments rewrite the sweep file before any of this, so they act on layer 3.
    """
    for key, value in entry.fixed.items():
        if key in given and given[key] != value:
            raise ConfigError(f"{where}.params.{key}: '{entry.name}' fixes {key}={short(repr(value))}; "
                              f"remove it or use the family '{entry.family}'")
    merged = {**entry.cls.presets.get(dataset, {}), **given, **entry.fixed}
    params = build(entry.cls.Params, merged, f"{where}.params")
    return as_dict(params) if dataclasses.is_dataclass(params) else {}
