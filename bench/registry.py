"""Registries of methods and datasets: the built-in plugins, entry points, and user plugin folders.

Where plugins come from, in loading order:

1. Built-in: the project's top-level `methods/` and `datasets/` folders, installed (wheel or
   editable) as the private package `_bench_plugins.methods` / `_bench_plugins.datasets`, so
   nothing claims the top-level name `datasets` (a popular PyPI package). When `bench` itself is
   imported from a source checkout (its parent folder holds the project's pyproject.toml), that
   checkout's folders are used, so the plugins always match the `bench` code that runs.
2. Entry points: installed packages add classes through the groups `bench.methods` and
   `bench.datasets`.
3. User plugin folders, only when asked for: every root listed in `BENCH_PLUGIN_PATH`
   (os.pathsep-separated), the `plugins = [...]` list of `[tool.bench]` in the nearest
   pyproject.toml (the current directory or its closest parent that has one, up to the repository
   root or the home folder, never in a folder of another user or one everyone may write: see
   `project_file`; paths relative to it; each root it declares is named on stderr when imported),
   `--plugins DIR` on the command line, and a sweep's `plugins:` key (relative to the sweep file).
   A plugin root holds `methods/` and/or `datasets/`; every `*.py` file there not starting with
   '_' is imported under `_bench_user_<hash>.<kind>`, so relative imports (`from .common import x`)
   work. The current directory is never searched by itself.

The same file reached twice is loaded once. A user plugin (folder or entry point) registering a
built-in's name replaces it and says so on stderr; two different non-built-in classes claiming one
name is an error.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import stat
import sys
import tomllib
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.dataset import Dataset
from bench.errors import BenchError, ConfigError, UnknownNameError
from bench.method import Method
from bench.params import near, short

BUILTIN_PACKAGE = "_bench_plugins"
KINDS = ("methods", "datasets")
USER_PREFIX = "_bench_user_"

_METHOD_CLASSES: dict[str, type[Method]] = {}
_DATASET_CLASSES: dict[str, type[Dataset]] = {}
_ORIGINS: dict[tuple[str, str], Origin] = {}  # (kind, name) -> where the registered class came from
_LOADED = False  # built-ins, entry points, BENCH_PLUGIN_PATH and [tool.bench] loaded
_REQUESTED: list[tuple[Path, str]] = []  # roots asked for (--plugins), loaded on the next lookup
_ROOTS_DONE: set[Path] = set()  # real paths of plugin kind folders already imported
_FILES_DONE: set[Path] = set()  # real paths of plugin files already imported
_CURRENT: list[Origin] = []  # the origin of the plugin being imported (a stack)


@dataclass(frozen=True)
class Origin:
    """Where a plugin class came from: 'built-in', 'path' (a user plugin file) or 'entry point'."""

    kind: str
    where: str = ""

    def __str__(self) -> str:
        return self.kind if self.kind == "built-in" else f"{self.kind} {self.where}".strip()


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

    @property
    def origin(self) -> Origin:
        """Where the family class came from."""
        return origin_of("method", self.cls.name)


def origin_of(kind: str, name: str) -> Origin:
    """Where the class registered as `name` ('method' or 'dataset') came from."""
    return _ORIGINS.get((kind, name), Origin("code"))


def _check_name(name: str, kind: str, obj: Any) -> None:
    if not name or not isinstance(name, str) or "/" in name:
        raise BenchError(f"{kind} plugin {obj!r} needs a class attribute `name` without '/'")


def _register(table: dict[str, Any], kind: str, cls: Any) -> Any:
    """Add `cls` under `cls.name`.

    The same class (same source file) again is a no-op; a user plugin replaces a built-in with one
    line on stderr; any other second class under a taken name is an error.
    """
    _check_name(cls.name, kind, cls)
    origin = _CURRENT[-1] if _CURRENT else Origin("code", cls.__module__)
    if origin.kind == "path":  # name the file, not just the plugin root
        origin = Origin("path", _qualname(cls).rpartition(":")[0])
    old = table.get(cls.name)
    if old is not None and _qualname(old) == _qualname(cls):
        return cls  # the same class (or the same file imported again): keep the first and its origin
    if old is not None:
        old_origin = origin_of(kind, cls.name)
        if old_origin.kind == "built-in" and origin.kind in ("path", "entry point"):
            print(f"bench: {kind} '{cls.name}' from {origin} overrides the built-in one", file=sys.stderr)
        else:
            raise BenchError(f"{kind} name '{cls.name}' is registered twice: {_qualname(old)} ({old_origin.kind}) "
                             f"and {_qualname(cls)} ({origin.kind}); rename one or leave one out of the plugin paths")
    table[cls.name] = cls
    _ORIGINS[(kind, cls.name)] = origin
    return cls


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: register a method family (and its variants) under `cls.name`."""
    return _register(_METHOD_CLASSES, "method", cls)


def register_dataset(cls: type[Dataset]) -> type[Dataset]:
    """Class decorator: register a dataset plugin under `cls.name`."""
    return _register(_DATASET_CLASSES, "dataset", cls)


def _qualname(cls: type) -> str:
    """The class's source file (real path: the same file under two module names is one class) and name."""
    where = getattr(cls, "__plugin_file__", None) or getattr(sys.modules.get(cls.__module__), "__file__", None)
    where = os.path.realpath(where) if where else cls.__module__
    return f"{where}:{cls.__qualname__}"


@contextlib.contextmanager
def _loading(origin: Origin) -> Iterator[None]:
    _CURRENT.append(origin)
    try:
        yield
    finally:
        _CURRENT.pop()


@functools.cache
def source_checkout() -> Path | None:
    """The project folder when `bench` is imported from a source checkout (editable or not), else None."""
    root = Path(__file__).resolve().parent.parent
    try:
        name = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8")).get("project", {}).get("name")
    except (OSError, ValueError):
        return None
    return root if name == "bench" and all((root / k).is_dir() for k in KINDS) else None


def builtin_folder(kind: str) -> Path | None:
    """The folder of the built-in `methods`, `datasets` or `sweeps`, wherever bench is installed."""
    checkout = source_checkout()
    if checkout is not None:
        return checkout / kind if (checkout / kind).is_dir() else None
    spec = importlib.util.find_spec(f"{BUILTIN_PACKAGE}.{kind}")
    for entry in (spec.submodule_search_locations or []) if spec else []:
        if Path(entry).is_dir():
            return Path(entry).resolve()
    return None


@contextlib.contextmanager
def guarded(what: str, modname: str | None = None) -> Iterator[None]:
    """Run a plugin's import: any exception, and `SystemExit` (a plugin calling `sys.exit` would end
    bench silently with its code), becomes one BenchError naming the plugin (`what`); a BenchError
    it raises is kept. Only Ctrl-C (KeyboardInterrupt) passes through."""
    try:
        yield
    except BenchError:
        raise
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:
        if modname:
            sys.modules.pop(modname, None)
        raise BenchError(f"{what} called sys.exit({short(repr(exc.code))}) while being imported; a plugin must not "
                         "exit (remove the call, or leave the plugin out)") from None
    except BaseException as exc:  # noqa: BLE001 - whatever a plugin raises is the plugin's fault
        if modname:
            sys.modules.pop(modname, None)
        raise BenchError(f"{what} failed to import: {type(exc).__name__}: {short(exc, 200)}") from exc


def _package(name: str, folder: Path | None) -> None:
    """Register an (empty) package `name` searching `folder`, unless it is imported already."""
    if name in sys.modules:
        return
    init = folder / "__init__.py" if folder else None
    if init is not None and init.exists():
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        with guarded(f"plugin {init}", name):
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        return
    module = types.ModuleType(name)
    module.__path__ = [str(folder)] if folder else []  # a container: its children are registered explicitly
    module.__package__ = name
    sys.modules[name] = module


def _import_folder(folder: Path, package: str) -> None:
    """Import every `*.py` file of `folder` (not starting with '_') as `package.<stem>`, each file once."""
    _package(package, folder)
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        real = path.resolve()
        modname = f"{package}.{path.stem}"
        if modname in sys.modules or real in _FILES_DONE:
            continue
        _FILES_DONE.add(real)
        with guarded(f"plugin {path}", modname):
            importlib.import_module(modname)


def _load_builtins() -> None:
    checkout = source_checkout()
    if checkout is not None:
        _package(BUILTIN_PACKAGE, None)
    with _loading(Origin("built-in")):
        for kind in KINDS:
            folder = builtin_folder(kind)
            if folder is None:
                continue
            if checkout is not None:
                _package(f"{BUILTIN_PACKAGE}.{kind}", folder)
            else:
                importlib.import_module(f"{BUILTIN_PACKAGE}.{kind}")
            _ROOTS_DONE.add(folder.resolve())
            _import_folder(folder, f"{BUILTIN_PACKAGE}.{kind}")


def _load_entry_points() -> None:
    for group, register in (("bench.methods", register_method), ("bench.datasets", register_dataset)):
        for ep in importlib.metadata.entry_points(group=group):
            dist = getattr(ep.dist, "name", None)
            with _loading(Origin("entry point", f"{ep.value}" + (f" ({dist})" if dist else ""))):
                with guarded(f"entry point {ep.name} = {ep.value} ({group})"):
                    obj = ep.load()
                if isinstance(obj, type):
                    register(obj)


def load_root(root: str | Path, asked_by: str = "--plugins") -> None:
    """Import the plugin root `root` (a folder holding methods/ and/or datasets/) unless loaded already.

    `asked_by` names where the path came from, for the error when it is not a plugin root.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{asked_by}: plugin folder {root} does not exist (or is not a folder)")
    kinds = [k for k in KINDS if (root / k).is_dir()]
    if not kinds:
        raise ConfigError(f"{asked_by}: plugin folder {root} has no methods/ or datasets/ folder; "
                          "put plugin files in <folder>/methods/*.py or <folder>/datasets/*.py")
    real = root.resolve()
    base = USER_PREFIX + hashlib.sha256(str(real).encode()).hexdigest()[:10]
    for kind in kinds:
        folder = (root / kind).resolve()
        if folder in _ROOTS_DONE:
            continue
        _ROOTS_DONE.add(folder)
        _package(base, None)
        try:
            with _loading(Origin("path", str(real))):
                _import_folder(folder, f"{base}.{kind}")
        except BaseException:
            _ROOTS_DONE.discard(folder)  # never handed to Dask workers (user_plugin_roots) once it failed
            raise


def env_plugin_paths() -> list[Path]:
    """The roots listed in BENCH_PLUGIN_PATH."""
    return [Path(p) for p in os.environ.get("BENCH_PLUGIN_PATH", "").split(os.pathsep) if p]


def project_file(start: Path | None = None) -> Path | None:
    """The pyproject.toml that may declare plugins: in `start` (default the current directory) or the
    closest parent having one, searching no higher than the first of: a repository root (a folder
    holding .git), the home folder, a folder owned by another user or writable by everyone (a shared
    temporary folder: anyone could plant a pyproject.toml there). Git's `safe.directory` rule, so a
    file nobody here wrote never makes `bench` import code."""
    here = (start or Path.cwd()).resolve()
    home = _home()
    uid = os.getuid() if hasattr(os, "getuid") else None
    for folder in (here, *here.parents):
        try:
            info = folder.stat()
        except OSError:
            return None
        if (uid is not None and info.st_uid != uid) or info.st_mode & stat.S_IWOTH:
            return None  # another user's folder, or /tmp-like: its pyproject.toml is not ours to trust
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            owner = candidate.stat().st_uid
            return candidate if uid is None or owner == uid else None
        if (folder / ".git").exists() or folder == home:
            return None
    return None


def _home() -> Path | None:
    try:
        return Path.home().resolve()
    except (RuntimeError, OSError, KeyError):
        return None


def project_plugin_paths(start: Path | None = None) -> list[Path]:
    """`[tool.bench] plugins = [...]` of the nearest pyproject.toml, relative to its folder."""
    path = project_file(start)
    if path is None:
        return []
    from bench.readers import read_text_file

    try:  # the reader of every user input: a regular file, size-capped, one-line errors
        doc = tomllib.loads(read_text_file(path, "pyproject.toml"))
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError(f"{path}: cannot read it as TOML ({short(exc, 160)}); bench reads [tool.bench] from the "
                          "nearest pyproject.toml") from None
    section = doc.get("tool", {}).get("bench")
    if section is None:
        return []
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [tool.bench] must be a table")
    unknown = set(section) - {"plugins"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"{path}: [tool.bench] has an unknown key '{key}'{near(key, ['plugins'])}; allowed: plugins")
    plugins = section.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        raise ConfigError(f"{path}: [tool.bench] plugins must be a list of folder paths (strings), got "
                          f"{short(repr(plugins))}")
    return [path.parent / p for p in plugins]


def request_plugins(paths: Iterable[str | Path], asked_by: str = "--plugins") -> None:
    """Ask for plugin roots (e.g. from --plugins); they are imported on the next registry lookup."""
    _REQUESTED.extend((Path(p), asked_by) for p in paths)


def load_plugins(paths: Iterable[str | Path] = (), asked_by: str = "--plugins") -> None:
    """Import the built-in plugins and entry points (once), the user plugin roots asked for, and `paths`."""
    global _LOADED
    todo: list[tuple[Path, str]] = []
    if not _LOADED:
        _LOADED = True
        _load_builtins()
        _load_entry_points()
        todo += [(p, "BENCH_PLUGIN_PATH") for p in env_plugin_paths()]
        project = project_file()
        declared = project_plugin_paths()
        for root in declared:
            print(f"bench: importing plugins from {root} (declared by [tool.bench] in {project})", file=sys.stderr)
        todo += [(p, f"{project} [tool.bench] plugins") for p in declared]
    todo += _REQUESTED
    _REQUESTED.clear()
    todo += [(Path(p), asked_by) for p in paths]
    for root, who in todo:
        load_root(root, who)


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
        raise UnknownNameError(f"expected a method name, got {short(repr(name))}")
    entries = method_entries()
    if name not in entries:
        raise UnknownNameError(f"unknown method '{short(name)}'{near(name, entries)}; "
                               "`bench list methods` shows them all")
    return entries[name]


def dataset_classes() -> dict[str, type[Dataset]]:
    """Every registered dataset plugin, sorted by name."""
    load_plugins()
    return dict(sorted(_DATASET_CLASSES.items()))


def get_dataset(name: str) -> type[Dataset]:
    """The dataset class for a name; unknown names get near-match suggestions."""
    if not isinstance(name, str):
        raise UnknownNameError(f"expected a dataset name, got {short(repr(name))}")
    classes = dataset_classes()
    if name not in classes:
        raise UnknownNameError(f"unknown dataset '{short(name)}'{near(name, classes)}; "
                               "`bench list datasets` shows them all")
    return classes[name]


def match(names: list[str], pattern: str) -> list[str]:
    """Names matching a shell-style wildcard pattern."""
    return [n for n in names if fnmatch.fnmatch(n, pattern)]


def user_plugin_roots() -> tuple[str, ...]:
    """The plugin roots (folders holding methods/ and/or datasets/) this process has imported, built-ins
    included, so that a Dask worker can import the same ones (each is imported once per process)."""
    load_plugins()
    return tuple(sorted({str(Path(folder).parent) for folder in _ROOTS_DONE}))
