"""Typed hyperparameters: dataclasses with defaults, validated with messages naming the key."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any

from bench.errors import ConfigError


def spec(default: Any, *, help: str = "", choices: tuple | None = None, low: float | None = None,
         high: float | None = None) -> Any:
    """A dataclass field with a default, a one-line help text and optional bounds or choices."""
    meta = {"help": help, "choices": choices, "low": low, "high": high}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def near(name: str, options: typing.Iterable[str]) -> str:
    """' (did you mean a, b?)' for close matches, else ''."""
    hits = difflib.get_close_matches(name, list(options), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(hits)}?)" if hits else ""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (arg, *_rest) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, arg, where) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads "1e-3" as a string
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def build(cls: type, values: dict[str, Any] | None, where: str) -> Any:
    """Instantiate the dataclass `cls` from `values`, checking names, types, bounds and choices."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in values:
        if key not in fields:
            raise ConfigError(f"{where}: unknown parameter '{key}'{near(key, fields)}; "
                              f"known: {', '.join(fields)}")
    out = {}
    for key, value in values.items():
        f = fields[key]
        here = f"{where}.{key}"
        value = _coerce(value, hints[key], here)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{here}: {value} is not a finite number")
        if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
            raise ConfigError(f"{here}: {str(value)[:30]} does not fit in 64 bits")
        meta = f.metadata
        if meta.get("choices") and value not in meta["choices"]:
            raise ConfigError(f"{here}: {value!r} is not one of {list(meta['choices'])}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if meta.get("low") is not None and value < meta["low"]:
                raise ConfigError(f"{here}: {value} is below the minimum {meta['low']}")
            if meta.get("high") is not None and value > meta["high"]:
                raise ConfigError(f"{here}: {value} is above the maximum {meta['high']}")
        out[key] = value
    try:
        return cls(**out)
    except ConfigError as exc:  # cross-field checks in __post_init__
        raise ConfigError(f"{where}: {exc}") from None


def as_dict(params: Any) -> dict[str, Any]:
    """Plain dict of a params dataclass (tuples become lists, for JSON)."""
    def plain(v: Any) -> Any:
        return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v
    return {k: plain(v) for k, v in dataclasses.asdict(params).items()}


def describe(cls: type) -> list[tuple[str, Any, str]]:
    """(name, default, help) for each parameter of a params dataclass."""
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append((f.name, default, f.metadata.get("help", "")))
    return rows
