"""`bench info NAME`: everything a user can set on a method (or dataset), as text lines."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from bench.errors import UnknownNameError


class RecordingTrial:
    """A stand-in for an Optuna trial that records what a `search_space(trial)` would suggest."""

    def __init__(self) -> None:
        self.space: dict[str, str] = {}

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False, step: float | None = None
                      ) -> float:
        self.space[name] = f"float in [{low:g}, {high:g}]" + (" (log scale)" if log else "") + (
            f" step {step:g}" if step else "")
        return low

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False, step: int = 1) -> int:
        self.space[name] = f"int in [{low}, {high}]" + (" (log scale)" if log else "") + (
            f" step {step}" if step != 1 else "")
        return low

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        self.space[name] = f"one of {list(choices)}"
        return list(choices)[0]


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "choice"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _range(meta: Any, tp: Any = None) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if meta.get("choices"):
        return "one of " + ", ".join(map(str, meta["choices"]))
    low, high = meta.get("low"), meta.get("high")
    if low is None and high is None:
        return ""
    return f"[{'' if low is None else low}, {'' if high is None else high}]"


def param_rows(params_cls: type) -> list[tuple[str, str, str, str, str]]:
    """(name, type, default, range, help) for each field of a params dataclass."""
    hints = typing.get_type_hints(params_cls)
    rows = []
    for f in dataclasses.fields(params_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append((f.name, _type_name(hints[f.name]), repr(default), _range(f.metadata, hints[f.name]),
                     f.metadata.get("help", "")))
    return rows


def search_space(cls: type) -> dict[str, str]:
    """The parameters a method's `search_space(trial)` explores, described."""
    trial = RecordingTrial()
    try:
        cls.search_space(trial)
    except NotImplementedError:
        return {}
    return trial.space


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    from tabulate import tabulate

    return tabulate(rows, headers=header, tablefmt="simple").splitlines()


def method_info(name: str) -> list[str]:
    """Lines describing a method name (family or family/variant)."""
    from bench.registry import get_method, method_entries

    entry = get_method(name)
    cls = entry.cls
    missing = "learns from unpaired rows" if cls.supports_missing else "through missing_policy (drop or zero)"
    lines = [f"{entry.name}: {entry.description or cls.description}",
             f"family: {entry.family}" + (f", variant {entry.variant}" if entry.variant else "")
             + f"; incomplete-modal data: {missing}"]
    if entry.fixed:
        lines.append("fixes: " + ", ".join(f"{k}={v!r}" for k, v in entry.fixed.items()))
    variants = [n for n, e in method_entries().items() if e.family == entry.family and e.variant]
    if not entry.variant and variants:
        lines.append("variants: " + ", ".join(variants))
    lines += ["", "parameters:"]
    rows = [(name, tp, f"{entry.fixed[name]!r} (fixed)" if name in entry.fixed else default, rng, text)
            for name, tp, default, rng, text in param_rows(cls.Params)]
    lines += ["  " + line for line in _table(rows, ("name", "type", "default", "range", "help"))]
    if any(f.name == "precision" for f in dataclasses.fields(cls.Params)):
        from bench.hardware import precision_note

        lines += ["", f"precision, fast on this machine: {precision_note()}"]
    if cls.presets:
        lines += ["", "presets (per dataset; they override the defaults: see the precedence on the manual's "
                  "sweep file page):"]
        for dataset, values in cls.presets.items():
            lines.append(f"  {dataset}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    space = search_space(cls)
    lines += ["", "search space (bench tune):" if space else "search space: none (bench tune skips it)"]
    lines += [f"  {k}: {v}" for k, v in space.items()]
    return lines


def dataset_info(name: str) -> list[str]:
    """Lines describing a dataset plugin."""
    from bench.registry import get_dataset

    cls = get_dataset(name)
    lines = [f"{cls.name}: {cls.description}", "", "parameters:"]
    lines += ["  " + line for line in _table(param_rows(cls.Params), ("name", "type", "default", "range", "help"))]
    return lines


def info(name: str) -> list[str]:
    """Lines for a method or dataset name; unknown names list near matches of both kinds."""
    from bench.registry import dataset_classes, method_entries

    if name in method_entries():
        return method_info(name)
    if name in dataset_classes():
        return dataset_info(name)
    from bench.params import near

    raise UnknownNameError(f"no method or dataset named '{name}'{near(name, [*method_entries(), *dataset_classes()])}"
                           "; `bench list methods` and `bench list datasets` show them all")


__all__ = ["RecordingTrial", "dataset_info", "info", "method_info", "param_rows", "search_space"]
