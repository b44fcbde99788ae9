"""Command-line assignments: `KEY=VALUE` tokens that override a sweep file's YAML, Hydra-style.

(The user manual calls them command-line overrides; in the code they are *assignments*, to keep
them apart from a sweep file's own `overrides:` mapping of per-dataset parameter values.)

Grammar (one token each, values parsed as YAML flow values):

    seeds=[0]                       any top-level key of a sweep file
    split.val=0.2                   a key inside a top-level mapping
    methods.SEL.epochs=5            a parameter of the method entries selected by SEL
    methods.SEL.label=fast          an entry key (name, label, params, grid, params_from)
    datasets.SEL.n=500              a parameter of the dataset entries selected by SEL
    datasets.SEL.split.val=0.2      an entry key (label, params, split, missing, ...)

SEL selects entries by name, label or family (`pgnn_con` selects `pgnn_con` and every
`pgnn_con/...` variant) and may be a wildcard (`'pgnn_con*'`, `'*'`). A family-wide parameter
override leaves out the variants that fix that parameter; naming such a variant exactly is
an error. A wildcard applies a parameter to every selected method that has it (as `"*"` does
in a sweep file's `overrides:`), so `methods.*.epochs=5` leaves closed-form methods alone; it is
an error only when no selected method has the parameter. With `multirun`, a comma-separated
value (`methods.cca.dim=8,16`) becomes a grid over those values, and `seeds=0,1,2` a list of seeds.

Assignments only rewrite the parsed YAML; the sweep is then validated exactly as a file would
be, and overridden runs get their own run keys from their resolved specs.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
from dataclasses import dataclass
from typing import Any

from bench.errors import BenchError, ConfigError
from bench.params import near, short
from bench.readers import load_yaml_text

MAX_TOKEN = 2000  # characters: an override longer than this is a mistake, not a value


@dataclass(frozen=True)
class Assignment:
    """One parsed `path=value` token."""

    token: str
    path: tuple[str, ...]
    value: Any
    choices: tuple[Any, ...] | None = None  # multirun: the values to sweep over


def _split_commas(text: str) -> list[str]:
    """Split on commas that are not inside brackets or quotes."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts


def _value(text: str, token: str) -> Any:
    value = load_yaml_text(text, f"override '{short(token, 80)}'")  # the same alias and size limits as a file
    if value is None and text.strip() not in ("null", "~"):
        raise ConfigError(f"override '{short(token, 80)}': empty value; write key=value (null for none)")
    return value


def parse_assignment(token: str, multirun: bool = False) -> Assignment:
    """Parse one `a.b.c=value` token (one-line ConfigError when malformed)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN:
        raise ConfigError(f"override '{str(token)[:60]}...': longer than {MAX_TOKEN} characters")
    if "=" not in token:
        raise ConfigError(f"unexpected argument '{short(token, 80)}': overrides are key=value (e.g. seeds=[0] or "
                          "methods.pgnn_con.epochs=5)")
    key, _, text = token.partition("=")
    path = tuple(key.strip().split("."))
    if not key.strip() or any(not part for part in path):
        raise ConfigError(f"override '{short(token, 80)}': '{key}' is not a key path like seeds or methods.cca.dim")
    if multirun and len(parts := _split_commas(text)) > 1:
        choices = tuple(_value(p, token) for p in parts)
        return Assignment(token, path, list(choices), choices)
    return Assignment(token, path, _value(text, token))


def _selects(entry: Any, sel: str) -> bool:
    """Does the methods/datasets selector `sel` pick this entry (a name or a mapping)?"""
    item = {"name": entry} if isinstance(entry, str) else entry
    if not isinstance(item, dict):
        return False
    names = [str(item.get("name", "")), str(item.get("label") or "")]
    family = names[0].partition("/")[0]
    return any(n and fnmatch.fnmatchcase(n, sel) for n in names) or family == sel


def _known_params(kind: str, name: str) -> tuple[set[str], dict[str, Any]]:
    """Parameter names of a method or dataset entry, and (methods) the values its variant fixes."""
    from bench.registry import get_dataset, get_method

    try:
        if kind == "methods":
            entry = get_method(name)
            return {f.name for f in dataclasses.fields(entry.cls.Params)}, dict(entry.fixed)
        return {f.name for f in dataclasses.fields(get_dataset(name).Params)}, {}
    except BenchError:
        return set(), {}  # an unknown name is reported by the sweep's own validation


def _set(target: dict, path: tuple[str, ...], value: Any, token: str) -> None:
    for part in path[:-1]:
        nxt = target.get(part)
        if nxt is None:
            nxt = target[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override '{short(token, 80)}': '{part}' is {type(nxt).__name__}, not a mapping")
        target = nxt
    target[path[-1]] = value


def _apply_entries(raw: dict, ov: Assignment, kind: str, entry_keys: set[str]) -> None:
    if len(ov.path) < 3:
        raise ConfigError(f"override '{short(ov.token, 80)}': write {kind}.NAME.KEY=value (e.g. "
                          + ("methods.pgnn_con.epochs=5)" if kind == "methods" else "datasets.synthetic.n=500)"))
    sel, rest = ov.path[1], ov.path[2:]
    items = raw.get(kind)
    if not isinstance(items, list):
        raise ConfigError(f"override '{short(ov.token, 80)}': the sweep has no list of {kind}")
    hits = [i for i, e in enumerate(items) if _selects(e, sel)]
    if not hits:
        names = [e if isinstance(e, str) else str(e.get("label") or e.get("name")) for e in items
                 if isinstance(e, (str, dict))]
        raise ConfigError(f"override '{short(ov.token, 80)}': no entry of {kind} is named '{sel}'{near(sel, names)}; "
                          f"{kind}: {', '.join(names)}")
    as_param = rest[0] not in entry_keys or rest[0] == "name"
    if rest[0] == "name":
        raise ConfigError(f"override '{short(ov.token, 80)}': an entry's name cannot be overridden; "
                          "edit the sweep file or filter with --method/--dataset")
    applied = 0
    wildcard = any(c in sel for c in "*?[")
    for i in hits:
        item = {"name": items[i]} if isinstance(items[i], str) else copy.deepcopy(items[i])
        if as_param:
            if not _assign_param(item, ov, kind, sel, rest, wildcard):
                continue
        else:
            if ov.choices is not None:
                raise ConfigError(f"override '{short(ov.token, 80)}': multirun values apply to parameters only")
            _set(item, rest, ov.value, ov.token)
        items[i] = item
        applied += 1
    if not applied:
        if wildcard:
            raise ConfigError(f"override '{short(ov.token, 80)}': no entry selected by '{sel}' has a parameter "
                              f"'{rest[0]}' it may set")
        raise ConfigError(f"override '{short(ov.token, 80)}': every entry selected by '{sel}' fixes '{rest[0]}'")


def _assign_param(item: dict, ov: Assignment, kind: str, sel: str, rest: tuple[str, ...], wildcard: bool) -> bool:
    """Set the parameter `rest[0]` of one selected entry (in its params, or as a grid with multirun);
    False when the entry is left out (a variant fixing it, or, under a wildcard, a method without it)."""
    known, fixed = _known_params(kind, str(item.get("name")))
    pname = rest[0]
    if known and pname not in known:
        if wildcard:
            return False  # `methods.*.epochs=5`: every selected method that has the parameter, as `"*"` in a file
        raise ConfigError(f"override '{short(ov.token, 80)}': {item.get('name')} has no parameter '{pname}'"
                          f"{near(pname, known)}; `bench info {item.get('name')}` lists them")
    if pname in fixed:
        if sel in (item.get("name"), item.get("label")):
            raise ConfigError(f"override '{short(ov.token, 80)}': '{item.get('name')}' fixes {pname}="
                              f"{short(repr(fixed[pname]))}; override the family instead")
        return False  # a family-wide override skips variants that fix the parameter
    if len(rest) > 1:
        raise ConfigError(f"override '{short(ov.token, 80)}': parameters have no sub-keys ('{'.'.join(rest)}')")
    if ov.choices is not None:
        if kind != "methods":
            raise ConfigError(f"override '{short(ov.token, 80)}': multirun values apply to method parameters "
                              "and seeds only; list datasets as separate entries")
        grid = item.setdefault("grid", {}) or {}
        item["grid"] = {**grid, pname: list(ov.choices)}
        (item.get("params") or {}).pop(pname, None)
    else:
        item["params"] = {**(item.get("params") or {}), pname: ov.value}
        if isinstance(item.get("grid"), dict):
            item["grid"].pop(pname, None)  # a fixed value replaces the file's grid over it
    return True


def apply_assignments(raw: Any, assignments: list[Assignment], top_keys: set[str], dataset_keys: set[str],
                      method_keys: set[str]) -> Any:
    """A copy of the parsed sweep `raw` with `assignments` applied in order."""
    if not assignments:
        return raw
    if not isinstance(raw, dict):
        return raw  # the sweep's own validation reports the malformed file
    raw = copy.deepcopy(raw)
    for ov in assignments:
        head = ov.path[0]
        if head not in top_keys:
            raise ConfigError(f"override '{short(ov.token, 80)}': unknown key '{head}'{near(head, top_keys)}; "
                              f"allowed: {', '.join(sorted(top_keys))}")
        if head == "methods":
            _apply_entries(raw, ov, "methods", method_keys)
        elif head == "datasets":
            _apply_entries(raw, ov, "datasets", dataset_keys)
        elif ov.choices is not None and ov.path != ("seeds",):
            raise ConfigError(f"override '{short(ov.token, 80)}': multirun values apply to method parameters and "
                              "seeds only")
        else:
            _set(raw, ov.path, ov.value, ov.token)
    return raw

