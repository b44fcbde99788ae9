"""Which records a `bench report` covers: sweep names, sweep files, overrides and filters.

The rule (the report of a command is the same command with `report` in place of `run`):

- a sweep **NAME** alone reports every record of `<results>/<NAME>/runs`; several
  configurations of a method become separate rows labelled with what differs;
- a sweep **FILE** (`*.yaml`), or a name given with `KEY=VALUE` overrides, `-s/--method`,
  `-d/--dataset` or `-m/--multirun`, is loaded as `bench run` loads it (a name resolves to a file
  of that name, else the shipped sweep) and the report covers exactly the runs that command
  defines, lists those without a record, and labels rows and columns relative to the file's
  current definition (without the command line's overrides): a row the overrides changed says
  so (`pgnn_con [epochs=5]`);
- given a file without overrides, records of the same sweep made with other configurations (an
  earlier `epochs=5` run, an edited file) are not shown; a note counts them and says what
  differs, and reporting the sweep by NAME (or with the overrides they were run with) shows them.

`-s` / `-d` given with a NAME that no file defines filter that folder's records by method and
dataset (name or label, wildcards), as `bench run` filters runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.errors import BenchError
from bench.report_configs import Reference, config_identity, short_key, split_sides


@dataclass
class Selection:
    """What a report covers: sweep names, run keys (None: every record), the runs the files
    define (for the missing notes), their current definitions, and record filters."""

    names: list[str] = field(default_factory=list)
    expected: dict[str, dict[str, tuple[str, str, int]]] = field(default_factory=dict)  # sweep -> key -> run
    reference: Reference = field(default_factory=Reference)  # the files' current definitions
    command: Reference = field(default_factory=Reference)  # what this command defines (overrides applied)
    files: dict[str, str] = field(default_factory=dict)  # sweep -> file, for sweeps given as files
    keys: dict[str, set[str]] = field(default_factory=dict)  # sweep given as a file -> its run keys
    methods: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()

    def keep(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records the report covers: a file's runs, and the records of sweeps given by name
        that pass the -s / -d filters."""
        from bench.sweep import select_specs as select

        by_name = [r for r in records if r["spec"]["sweep"] not in self.files]
        if self.methods or self.datasets:
            runs = [SimpleNamespace(record=r, method=r["spec"].get("method", r["spec"]["method_label"]),
                                    method_label=r["spec"]["method_label"],
                                    dataset=r["spec"].get("dataset", r["spec"]["dataset_label"]),
                                    dataset_label=r["spec"]["dataset_label"]) for r in by_name]
            by_name = [s.record for s in select(runs, self.methods, self.datasets)]
        chosen = {id(r) for r in by_name}
        return [r for r in records if id(r) in chosen
                or r["key"] in self.keys.get(r["spec"]["sweep"], ())]


def _existing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if (p / "runs").is_dir()) if root.is_dir() else []


def _spec_dict(spec: Any) -> dict[str, Any]:
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}


def _add_file(sel: Selection, path: str, root: Path, overrides: tuple[str, ...], multirun: bool,
              methods: tuple[str, ...], datasets: tuple[str, ...]) -> None:
    from bench.sweep import load_sweep, sweep_path

    sweep = load_sweep(path, cache_root=root / "cache", assignments=overrides, multirun=multirun,
                       only_methods=methods, only_datasets=datasets)
    current = load_sweep(path, cache_root=root / "cache") if (overrides or multirun) else sweep
    specs = [s for s in sweep.specs if s.dataset_label not in sweep.skipped]
    sel.names.append(sweep.name)
    sel.keys[sweep.name] = sel.keys.get(sweep.name, set()) | {s.key for s in specs}
    sel.expected.setdefault(sweep.name, {}).update({s.key: (s.dataset_label, s.method_label, s.seed) for s in specs})
    source = str(sweep_path(path)) + (f"; this report sets {' '.join(overrides)}" if overrides else "")
    sel.reference.add(sweep.name, [_spec_dict(s) for s in current.specs], source)
    sel.command.add(sweep.name, [_spec_dict(s) for s in specs], source)
    sel.files[sweep.name] = str(sweep_path(path))


def select(items: tuple[str, ...], root: Path, *, methods: tuple[str, ...] = (), datasets: tuple[str, ...] = (),
           multirun: bool = False) -> Selection:
    """Resolve the report's arguments: sweep names, sweep files and KEY=VALUE overrides."""
    from bench.sweep import sweep_path

    overrides = tuple(i for i in items if "=" in i)
    sweeps = [i for i in items if "=" not in i]
    resolve = bool(overrides or methods or datasets or multirun)
    if overrides and not sweeps:
        raise BenchError(f"the overrides {' '.join(overrides)} need the sweep they apply to: "
                         "bench report SWEEP.yaml KEY=VALUE, as bench run takes them")
    sel = Selection(methods=methods, datasets=datasets)
    existing = _existing(root)
    for item in sweeps:
        is_file = item.endswith((".yaml", ".yml")) or (resolve and sweep_path(item).is_file())
        if is_file:
            _add_file(sel, item, root, overrides, multirun, methods, datasets)
        elif overrides or multirun:
            raise BenchError(f"no sweep file '{item}' (nor a shipped sweep of that name) for the overrides "
                             f"{' '.join(overrides) or '--multirun'}; pass the sweep file")
        elif item not in existing:
            hint = f"; sweeps there: {', '.join(existing)}" if existing else "; none there yet (run `bench run`)"
            raise BenchError(f"no sweep '{item}' under {root}{hint}")
        else:
            sel.names.append(item)
    return sel


def _differences(rec: dict[str, Any], sweep: str, command: Reference) -> list[str]:
    """'key=value' of what a record's configuration has that the command's run of the same
    (dataset, method) label has not."""
    spec = rec["spec"]
    mside, dside = split_sides(config_identity(spec))
    out = []
    for flat, ref in ((mside, command.method.get((sweep, spec["dataset_label"], spec["method_label"]))),
                      (dside, command.data.get((sweep, spec["dataset_label"])))):
        for k in sorted(set(flat) | set(ref or {})):
            if ref is not None and flat.get(k) != ref.get(k):
                out.append(f"{short_key(k)}={flat.get(k, '–').strip(chr(34))}")
    return out


def other_configurations(records: list[dict[str, Any]], sel: Selection) -> dict[str, str]:
    """Per sweep given as a file: a note on its ok records of the same (dataset, method) labels
    that this command does not define (other configurations), and what differs."""
    notes = {}
    for sweep in sel.files:
        labels = set(sel.command.method_labels(sweep))
        others = [r for r in records if r["spec"]["sweep"] == sweep and r.get("status") == "ok"
                  and r["key"] not in sel.keys[sweep]
                  and (r["spec"]["dataset_label"], r["spec"]["method_label"]) in labels]
        if not others:
            continue
        differ = list(dict.fromkeys(d for rec in others for d in _differences(rec, sweep, sel.command)))
        what = f" (they differ in {', '.join(differ[:6])}{', ...' if len(differ) > 6 else ''})" if differ else ""
        notes[sweep] = (f"{len(others)} record(s) of sweep {sweep} are of other configurations than this command "
                        f"defines ({sel.command.source[sweep]}){what} and are not shown: `bench report {sweep}` (the "
                        "name) shows every record of the sweep, or give the overrides they were run with")
    return notes
