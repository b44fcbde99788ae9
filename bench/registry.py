"""Registries of methods and datasets, filled from plugin folders and entry points.

Plugin folders (`methods/`, `datasets/`) are imported by path under the private package
names `_bench_plugins[_N].methods` / `.datasets`, so nothing shadows the PyPI `datasets`
package. Folders are searched in: the project root next to the `bench` package, the current
directory, and every root listed in `BENCH_PLUGIN_PATH` (os.pathsep-separated). Third-party
packages add plugins through the entry-point groups `bench.methods` and `bench.datasets`.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.dataset import Dataset
from bench.errors import BenchError, UnknownNameError
from bench.method import Method
from bench.params import near

_METHOD_CLASSES: dict[str, type[Method]] = {}
_DATASET_CLASSES: dict[str, type[Dataset]] = {}
_LOADED = False


@dataclass(frozen=True)
class MethodEntry:
    """A registered method name: the family class plus the parameters the variant fixes."""

    name: str
    cls: type[Method]
    variant: str | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def family(self) -> str:
        """The family (base) name."""
        return self.cls.name


def _check_name(name: str, kind: str, obj: Any) -> None:
    if not name or not isinstance(name, str) or "/" in name:
        raise BenchError(f"{kind} plugin {obj!r} needs a class attribute `name` without '/'")


def _register(table: dict[str, Any], kind: str, cls: Any) -> Any:
    """Add `cls` under `cls.name`; the same class again is a no-op, another class is an error."""
    _check_name(cls.name, kind, cls)
    old = table.get(cls.name)
    if old is not None and _qualname(old) != _qualname(cls):
        raise BenchError(f"{kind} name '{cls.name}' is registered twice: {_qualname(old)} and "
                         f"{_qualname(cls)}; rename one")
    table[cls.name] = cls
    return cls


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: register a method family (and its variants) under `cls.name`."""
    return _register(_METHOD_CLASSES, "method", cls)


def register_dataset(cls: type[Dataset]) -> type[Dataset]:
    """Class decorator: register a dataset plugin under `cls.name`."""
    return _register(_DATASET_CLASSES, "dataset", cls)


def _qualname(cls: type) -> str:
    return f"{getattr(cls, '__plugin_file__', cls.__module__)}:{cls.__qualname__}"


def plugin_roots() -> list[Path]:
    """Folders that may hold `methods/` and `datasets/` plugin folders, in search order."""
    roots = [Path(__file__).resolve().parent.parent, Path.cwd()]
    roots += [Path(p) for p in os.environ.get("BENCH_PLUGIN_PATH", "").split(os.pathsep) if p]
    seen, out = set(), []
    for root in roots:
        real = root.resolve()
        if real not in seen and ((real / "methods").is_dir() or (real / "datasets").is_dir()):
            seen.add(real)
            out.append(real)
    return out


def _import_folder(folder: Path, package: str) -> None:
    """Import every `*.py` file of `folder` (not starting with '_') as `package.<stem>`."""
    if package not in sys.modules:
        init = folder / "__init__.py"
        if init.exists():
            spec = importlib.util.spec_from_file_location(
                package, init, submodule_search_locations=[str(folder)])
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[package] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = types.ModuleType(package)
            module.__path__ = [str(folder)]
            module.__package__ = package
            sys.modules[package] = module
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        modname = f"{package}.{path.stem}"
        if modname in sys.modules:
            continue
        try:
            importlib.import_module(modname)
        except BenchError:
            raise
        except Exception as exc:
            sys.modules.pop(modname, None)
            raise BenchError(f"plugin {path} failed to import: {type(exc).__name__}: {exc}") from exc


def load_plugins() -> None:
    """Discover plugin folders and entry points once."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for i, root in enumerate(plugin_roots()):
        base = "_bench_plugins" if i == 0 else f"_bench_plugins_{i}"
        if base not in sys.modules:
            top = types.ModuleType(base)
            top.__path__ = []  # container only: its children are registered explicitly
            sys.modules[base] = top
        for kind in ("methods", "datasets"):
            if (root / kind).is_dir():
                _import_folder(root / kind, f"{base}.{kind}")
    for group, register in (("bench.methods", register_method), ("bench.datasets", register_dataset)):
        for ep in importlib.metadata.entry_points(group=group):
            obj = ep.load()
            if isinstance(obj, type):
                register(obj)


def method_entries() -> dict[str, MethodEntry]:
    """Every registered method name (families and `family/variant`), sorted."""
    load_plugins()
    out: dict[str, MethodEntry] = {}
    for name in sorted(_METHOD_CLASSES):
        cls = _METHOD_CLASSES[name]
        out[name] = MethodEntry(name=name, cls=cls, description=cls.description)
        for vname, variant in cls.variants.items():
            full = f"{name}/{vname}"
            out[full] = MethodEntry(name=full, cls=cls, variant=vname, fixed=dict(variant.fixed),
                                    description=variant.description)
    return out


def get_method(name: str) -> MethodEntry:
    """The entry for a method name; unknown names get near-match suggestions."""
    if not isinstance(name, str):
        raise UnknownNameError(f"expected a method name, got {name!r}")
    entries = method_entries()
    if name not in entries:
        raise UnknownNameError(f"unknown method '{name}'{near(name, entries)}; "
                               "`bench list methods` shows them all")
    return entries[name]


def dataset_classes() -> dict[str, type[Dataset]]:
    """Every registered dataset plugin, sorted by name."""
    load_plugins()
    return dict(sorted(_DATASET_CLASSES.items()))


def get_dataset(name: str) -> type[Dataset]:
    """The dataset class for a name; unknown names get near-match suggestions."""
    if not isinstance(name, str):
        raise UnknownNameError(f"expected a dataset name, got {name!r}")
    classes = dataset_classes()
    if name not in classes:
        raise UnknownNameError(f"unknown dataset '{name}'{near(name, classes)}; "
                               "`bench list datasets` shows them all")
    return classes[name]


def match(names: list[str], pattern: str) -> list[str]:
    """Names matching a shell-style wildcard pattern."""
    return [n for n in names if fnmatch.fnmatch(n, pattern)]
