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


INT64 = 2**63  # integers must fit in a signed 64-bit word (numpy, torch, SQLite, JSON readers)


def short(value: Any, limit: int = 60) -> str:
    """repr-free str(value) cut to `limit` characters: messages never quote a huge value whole."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_number(value: Any, where: str, *, integer: bool, low: float | None = None,
                 high: float | None = None) -> int | float:
    """The one check every number goes through, whatever its source (YAML, the command line, JSON,
    an option): a finite number (an integer where `integer`, fitting in 64 bits) within [low, high].

    Integral floats (`8.0`) are accepted as integers; strings that Python reads as a float (`1e-3`,
    which YAML 1.1 leaves a string) are accepted as floats. Raises a one-line ConfigError naming
    `where`, the value (shortened) and what is expected.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: expected {'an integer' if integer else 'a number'}, got {short(repr(value))}")
    if isinstance(value, str):
        if integer:
            raise ConfigError(f"{where}: expected an integer, got {short(repr(value))}")
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {short(repr(value))}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value} is not a finite number; give a finite value")
    if integer:
        if isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"{where}: expected an integer, got {short(value)}")
            value = int(value)
        if not -INT64 <= value < INT64:
            raise ConfigError(f"{where}: {short(value, 30)} does not fit in 64 bits (|value| < 2^63)")
    else:
        if isinstance(value, int) and not -INT64 <= value < INT64:
            raise ConfigError(f"{where}: {short(value, 30)} is too large for a number here (|value| < 2^63)")
        value = float(value)
    if low is not None and value < low:
        raise ConfigError(f"{where}: {short(value, 30)} is below the minimum {low}")
    if high is not None and value > high:
        raise ConfigError(f"{where}: {short(value, 30)} is above the maximum {high}")
    return value


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
        raise ConfigError(errors[0] if errors else f"{where}: bad value {short(repr(value))}")
    if origin is typing.Literal:
        if not isinstance(value, typing.Hashable) or value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {short(repr(value))} is not one of {list(typing.get_args(tp))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {short(repr(value))}")
        (arg, *_rest) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, arg, where) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {short(repr(value))}")
    if tp is int or tp is float:
        return check_number(value, where, integer=tp is int)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {short(repr(value))}")
        return value
    return value


def build(cls: type, values: dict[str, Any] | None, where: str) -> Any:
    """Instantiate the dataclass `cls` from `values`, checking names, types, bounds and choices
    (every number through `check_number`)."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in values:
        if key not in fields:
            raise ConfigError(f"{where}: unknown parameter '{short(key)}'{near(str(key), fields)}; "
                              f"known: {', '.join(fields)}")
    out = {}
    for key, value in values.items():
        f = fields[key]
        here = f"{where}.{key}"
        value = _coerce(value, hints[key], here)
        meta = f.metadata
        if meta.get("choices") and value not in meta["choices"]:
            raise ConfigError(f"{here}: {short(repr(value))} is not one of {list(meta['choices'])}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            check_number(value, here, integer=isinstance(value, int), low=meta.get("low"), high=meta.get("high"))
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
