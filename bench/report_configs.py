"""Which configuration a run belongs to, and how the report's rows and columns name it.

A run's resolved configuration (its spec without labels and seeds) has two sides:

- the **data side** (`dataset`, `dataset_params`, `split`, `missing`, `missing_policy`): one per
  dataset entry of a sweep, so a second data configuration of a dataset label becomes a second
  *column* (`synthetic [n=500]`);
- the **method side** (`method`, `params`, `code_version`, ...): a *row*. One configuration is one
  row across datasets, so a label names the keys that differ (`cca [dim=8]`) wherever the method
  has several configurations, with each row's own values, on every dataset.

Given the sweep file's current definition (a `Reference`, from `bench report SWEEP.yaml`), labels
name what differs *from that definition* instead: rows and columns of the current definition
keep their plain labels, others say what differs and a note says they are not the file's
current definition. Records of different configurations are never averaged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

DATA_SIDE = {"dataset", "dataset_params", "split", "missing", "missing_policy"}
# Spec fields that do not change what a run computes (labels, bookkeeping) or that vary by design
# across the seeds of one configuration (the seed; the split seed under split_per_seed).
_NOT_CONFIG = {"sweep", "dataset_label", "method_label", "seed", "optional"}


def config_identity(spec: dict[str, Any]) -> dict[str, str]:
    """The resolved configuration of a run, flattened (`params.epochs`), values as JSON, without
    its seed and split seed: records of one configuration differ only in their seeds."""
    ident = {k: v for k, v in spec.items() if k not in _NOT_CONFIG}
    if isinstance(ident.get("split"), dict):
        ident["split"] = {k: v for k, v in ident["split"].items() if k != "seed"}
    return _flat(ident)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v, sort_keys=True, default=str)
    return out


def config_id(ident: dict[str, str]) -> str:
    """A short stable id of a flattened configuration (one side of it)."""
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:10]


def split_sides(ident: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(method side, data side) of a flattened configuration."""
    data = {k: v for k, v in ident.items() if k.split(".")[0] in DATA_SIDE}
    return {k: v for k, v in ident.items() if k not in data}, data


@dataclass
class Reference:
    """The sweep files' current definitions: method side per (sweep, dataset label, method label),
    data side per (sweep, dataset label), and how each sweep was defined (for the notes)."""

    method: dict[tuple[str, str, str], dict[str, str]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)
    order: dict[tuple[str, str, str], int] = field(default_factory=dict)  # run position in the file

    def add(self, sweep: str, specs: list[dict[str, Any]], source: str) -> None:
        """Record the specs (as dicts, the way records store them) of one sweep file."""
        self.source[sweep] = source
        for position, spec in enumerate(specs):
            self.order.setdefault((sweep, spec["dataset_label"], spec["method_label"]), position)
            mside, dside = split_sides(config_identity(spec))
            self.method[(sweep, spec["dataset_label"], spec["method_label"])] = mside
            self.data[(sweep, spec["dataset_label"])] = dside

    def method_labels(self, sweep: str) -> list[tuple[str, str]]:
        """(dataset label, method label) of every run of the sweep."""
        return [(d, m) for s, d, m in self.method if s == sweep]


def short_key(key: str) -> str:
    """'params.epochs' -> 'epochs'; 'dataset_params.n' -> 'n'; 'code_version' -> 'code'."""
    if key == "code_version":
        return "code"
    return key.removeprefix("params.").removeprefix("dataset_params.")


def _unquote(value: str) -> str:
    return value[1:-1] if value.startswith('"') and value.endswith('"') else value


def _differing(flats: list[dict[str, str]]) -> list[str]:
    keys = sorted({k for f in flats for k in f})
    return [k for k in keys if len({f.get(k) for f in flats}) > 1]


def _suffix(flat: dict[str, str], keys: list[str]) -> str:
    return ", ".join(f"{short_key(k)}={_unquote(flat.get(k, '–'))}" for k in keys)


def _name(base: str, flat: dict[str, str], keys: list[str]) -> str:
    return f"{base} [{_suffix(flat, keys)}]" if keys else base


def _data_labels(df: pd.DataFrame, flats: dict[str, dict[str, str]], ref: Reference
                 ) -> tuple[pd.Series, list[tuple[str, str]]]:
    """Column label of each row: the dataset label, plus what differs in its data configuration."""
    labels = df["dataset_base"].copy()
    notes = []
    for (sweep, dataset), g in df.groupby(["sweep", "dataset_base"], sort=False):
        ids = list(dict.fromkeys(g.sort_values("finished")["dconfig"]))
        among = _differing([flats[i] for i in ids]) if len(ids) > 1 else []
        for (origin, did), rows in g.groupby(["origin", "dconfig"], sort=False):
            current = ref.data.get((origin, dataset))
            keys = _differing([flats[did], current]) if current is not None else among
            labels[rows.index] = _name(dataset, flats[did], keys)
            if current is not None and keys:
                notes.append((sweep, f"{labels[rows.index[0]]}: not the data of the sweep file's current "
                                     f"definition ({ref.source.get(origin, origin)})"))
        if among:
            notes.append((sweep, f"{dataset} has records of {len(ids)} data configurations (differing in "
                                 f"{', '.join(map(short_key, among))}); they are shown as separate columns, "
                                 "never averaged"))
    return labels, notes


def _method_labels(df: pd.DataFrame, flats: dict[str, dict[str, str]], ref: Reference
                   ) -> tuple[pd.Series, list[tuple[str, str]]]:
    """Row label of each run: one label per method-side configuration, the same on every dataset."""
    labels = df["method_base"].copy()
    notes = []
    for (sweep, method), g in df.groupby(["sweep", "method_base"], sort=False):
        among: list[str] = []
        for _, per_dataset in g.groupby("dataset", sort=False):
            ids = list(dict.fromkeys(per_dataset["mconfig"]))
            among += [k for k in _differing([flats[i] for i in ids]) if k not in among]
        among.sort()
        changed = []
        for (origin, dataset, mid), rows in g.groupby(["origin", "dataset_base", "mconfig"], sort=False):
            current = ref.method.get((origin, dataset, method))
            keys = _differing([flats[mid], current]) if current is not None else among
            labels[rows.index] = _name(method, flats[mid], keys)
            if current is not None and keys:
                changed.append((labels[rows.index[0]], ref.source.get(origin, origin)))
        for label, source in dict.fromkeys(changed):
            notes.append((sweep, f"{label}: not the sweep file's current definition ({source})"))
        if among:
            datasets = ", ".join(dict.fromkeys(g["dataset"]))
            count = g["mconfig"].nunique()
            notes.append((sweep, f"{method} on {datasets} has records of {count} configurations (differing in "
                                 f"{', '.join(map(short_key, among))}); they are shown as separate rows, never "
                                 "averaged; pass the sweep file to report only its current definition"))
    return labels, notes


def label_configurations(df: pd.DataFrame, idents: dict[str, dict[str, dict[str, str]]],
                         reference: Reference | None = None) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Set the `dataset` and `method` labels of every run (keeping the sweep's labels in
    `dataset_base` / `method_base`); returns the frame and (sweep, note) pairs."""
    ref = reference or Reference()
    df = df.copy()
    df["dataset_base"], df["method_base"] = df["dataset"], df["method"]
    df["dataset"], data_notes = _data_labels(df, idents["d"], ref)
    df["method"], method_notes = _method_labels(df, idents["m"], ref)
    return df, data_notes + method_notes


def labels_against(spec: dict[str, Any], reference: dict[str, Any] | None) -> tuple[str, str, str]:
    """(method label, dataset label, configuration id) of one run, named as the report names it
    against a sweep file's current definition `reference` (the spec of the same dataset and method
    label in the file without command-line overrides; None: the run is the file's definition)."""
    mside, dside = split_sides(config_identity(spec))
    ident = f"{config_id(mside)}-{config_id(dside)}"
    if reference is None:
        return spec["method_label"], spec["dataset_label"], ident
    ref_m, ref_d = split_sides(config_identity(reference))
    return (_name(spec["method_label"], mside, _differing([mside, ref_m])),
            _name(spec["dataset_label"], dside, _differing([dside, ref_d])), ident)
