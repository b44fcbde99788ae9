"""Display names for the report's rows, columns and legends (`bench report --names`).

Records name methods, variants and datasets by their identifiers (`pgnn_con/no_gan`,
`mirflickr`); a paper prints `P-GNN-CON w/o GAN` and `MIRFlickr`. `--names paper` uses the
mapping below; `--names FILE.yaml` reads one of the same shape:

    methods:  {pgnn_con: P-GNN-CON, cca: CCA}        # a method or a whole label (pgnn_con/no_gan)
    variants: {no_gan: w/o GAN}                      # the part after the '/' of a variant
    datasets: {mirflickr: MIRFlickr}

A variant `family/variant` is shown as "<family's name> <variant's name>" when the variant is
mapped (else "<family's name>/variant"); what follows the label (`[epochs=5]`, a grid suffix)
is kept. Unmapped names stay as they are. Names only change what is printed: grouping, order
and identity always use the identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError

PAPER = {
    "methods": {"pgnn_con": "P-GNN-CON", "ignn_con": "I-GNN-CON", "dagnn": "DAGNN", "cca": "CCA",
                "kcca": "KCCA", "mlcca": "ml-CCA", "dcca": "DCCA", "dscmr": "DSCMR", "acmr": "ACMR",
                "algcn": "ALGCN", "label_regression": "Label regression"},
    "variants": {"no_gan": "w/o GAN", "no_gnn": "w/o GNN", "no_con": "w/o CON", "binary_con": "binary CON",
                 "no_layer_agg": "w/o layer aggregation", "no_recon": "w/o reconstruction"},
    "datasets": {"mirflickr": "MIRFlickr", "nuswide": "NUS-WIDE", "mscoco": "MS-COCO", "synthetic": "Synthetic",
                 "mfeat": "UCI mfeat", "openclipart": "OpenClipArt"},
}
SECTIONS = ("methods", "variants", "datasets")


def _split(label: str) -> tuple[str, str]:
    """'pgnn_con/no_gan [epochs=5]' -> ('pgnn_con/no_gan', ' [epochs=5]')."""
    head, sep, rest = label.partition(" ")
    return head, sep + rest


@dataclass(frozen=True)
class Names:
    """Identifier -> display name, per section; the identity mapping when empty."""

    methods: dict[str, str] = field(default_factory=dict)
    variants: dict[str, str] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)

    def method(self, label: str) -> str:
        """The display name of a method row label."""
        head, rest = _split(label)
        if head in self.methods:
            return self.methods[head] + rest
        family, slash, variant = head.partition("/")
        if not slash:
            return label
        shown = self.methods.get(family, family)
        return (f"{shown} {self.variants[variant]}" if variant in self.variants else f"{shown}/{variant}") + rest

    def dataset(self, label: str) -> str:
        """The display name of a dataset column label."""
        head, rest = _split(label)
        return self.datasets.get(head, head) + rest


def _check(data: Any, where: str) -> dict[str, dict[str, str]]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BenchError(f"{where}: expected a mapping with keys {', '.join(SECTIONS)}")
    for section, mapping in data.items():
        if section not in SECTIONS:
            raise BenchError(f"{where}: unknown key '{section}'; use {', '.join(SECTIONS)}")
        if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                                   for k, v in mapping.items()):
            raise BenchError(f"{where}: '{section}' must map identifiers to non-empty display names (text: text)")
    return data


def load_names(value: str | None) -> Names:
    """`--names`: None (identifiers), 'paper' (the built-in mapping) or a YAML file of that shape."""
    if value is None:
        return Names()
    if value == "paper":
        return Names(**PAPER)
    path = Path(value)
    if not path.is_file():
        raise BenchError(f"--names: no such file {path}; pass 'paper' or a YAML file with methods/variants/datasets")
    from bench.sweep import read_yaml

    return Names(**_check(read_yaml(path), f"--names {path}"))
