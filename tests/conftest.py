"""Shared helpers for the core tests: sweep files in tmp folders, test-only method plugins.

The test-only methods defined here (names start with `coretest_`) let tests count fits, plant
failures and check parameter precedence without training. They are registered for the test
session by the autouse fixture `test_methods` and removed at its end; a test module's own
test-only plugins use `registered(...)` (a fixture or a `with` block) the same way, so no test
plugin outlives the scope that needs it. `builtin_plugin` is the one way tests import plugin code.
"""

from __future__ import annotations

import contextlib
import importlib
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bench.method import Method, Variant
from bench.params import spec

FIXTURE_ROOT = Path(__file__).resolve().parent / "plugins_fixture"

# A dataset small enough that a closed-form run takes a few milliseconds.
TINY_SYNTHETIC = "{n: 240, image_dim: 16, text_dim: 12, num_labels: 6, groups: 2}"


def write_sweep(folder: Path, body: str, name: str = "sweep") -> Path:
    """Write a sweep YAML (dedented) to `folder/<name>.yaml` and return its path."""
    path = Path(folder) / f"{name}.yaml"
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def builtin_plugin(name: str) -> types.ModuleType:
    """A built-in plugin module (`methods.gnn_con`, `methods.common.losses`, ...), imported the way
    bench imports it (under its private package, after the registry has loaded the built-ins):
    the one way tests reach plugin code."""
    from bench.registry import BUILTIN_PACKAGE, load_plugins

    load_plugins()
    return importlib.import_module(f"{BUILTIN_PACKAGE}.{name}")


def files_under(folder: Path) -> list[Path]:
    """Every file below `folder` (empty when it does not exist)."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file()) if Path(folder).exists() else []


class Projection(Method):
    """Embeds both modalities by seeded random projections: finite, cheap, label-agnostic."""

    def _project(self, train, seed: int, dim: int = 4) -> None:
        rng = np.random.default_rng(seed)
        self.p_img = rng.normal(size=(train.image.shape[1], dim))
        self.p_txt = rng.normal(size=(train.text.shape[1], dim))

    def encode(self, image=None, text=None):
        img = None if image is None else (np.asarray(image) @ self.p_img).astype(np.float32)
        txt = None if text is None else (np.asarray(text) @ self.p_txt).astype(np.float32)
        return img, txt


@dataclass
class CountingParams:
    dim: int = spec(4, help="embedding size", low=1)
    epochs: int = spec(2, help="an epoch-count-like parameter with a lower bound", low=1)
    lr: float = spec(1e-2, help="a float parameter", low=0.0)


class CountingMethod(Projection):
    """Records every fit (seed, params) in the class attribute `fits`."""

    name = "coretest_counting"
    description = "test-only: counts fits"
    Params = CountingParams
    fits: list[tuple[int, dict]] = []

    def fit(self, train, val, ctx):
        CountingMethod.fits.append((ctx.seed, dict(vars(self.params))))
        self._project(train, ctx.seed, self.params.dim)


@dataclass
class FailingParams:
    dim: int = spec(4, help="embedding size", low=1)


class FailingMethod(Projection):
    """Raises for the seeds listed in the class attribute `fail_seeds`; counts attempts per seed."""

    name = "coretest_failing"
    description = "test-only: raises for chosen seeds"
    Params = FailingParams
    fail_seeds: set[int] = set()  # set by the `failing` fixture, so other code can train it safely
    attempts: list[int] = []

    def fit(self, train, val, ctx):
        FailingMethod.attempts.append(ctx.seed)
        if ctx.seed in FailingMethod.fail_seeds:
            raise ValueError(f"planted failure for seed {ctx.seed}")
        self._project(train, ctx.seed, self.params.dim)


@dataclass
class LayeredParams:
    from_default: int = spec(0)
    from_preset: int = spec(0)
    from_override: int = spec(0)
    from_sweep: int = spec(0)
    fixed_by_variant: int = spec(0)


class LayeredMethod(Projection):
    """Parameters named for the layer that should set them (precedence tests)."""

    name = "coretest_layered"
    description = "test-only: parameter precedence"
    Params = LayeredParams
    presets = {"synthetic": {"from_preset": 1, "from_override": 1, "from_sweep": 1, "fixed_by_variant": 1}}
    variants = {"pinned": Variant(fixed={"fixed_by_variant": 4}, description="fixes fixed_by_variant=4")}

    def fit(self, train, val, ctx):
        self._project(train, ctx.seed)


@pytest.fixture
def counting():
    """The counting test method with its fit log emptied."""
    CountingMethod.fits.clear()
    return CountingMethod


@pytest.fixture
def failing():
    """The failing test method: fails for seed 1, attempt log emptied."""
    FailingMethod.attempts.clear()
    FailingMethod.fail_seeds = {1}
    yield FailingMethod
    FailingMethod.fail_seeds = set()


@pytest.fixture(scope="session")
def mlflow_results(tmp_path_factory):
    """One results folder (and embedded MLflow store) shared by the MLflow tests: the store's
    creation costs seconds, so it is paid once; each test uses its own sweep (= experiment)."""
    return tmp_path_factory.mktemp("mlflow") / "results"


class Hang(BaseException):
    """Raised by the `deadline` fixture; a BaseException, so no `except Exception` (nor `except
    OSError`, which TimeoutError would match) in the code under test can swallow it."""


@pytest.fixture
def deadline():
    """Fail a test that runs past 120 s (a hang) instead of blocking the suite: SIGALRM raises `Hang`
    in the test's main thread, so a blocked read or a wait loop ends."""
    import signal

    def expire(_signum, _frame):
        raise Hang("the test ran past its 120 s deadline (a hang?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(120)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def registered(*classes: type) -> Iterator[None]:
    """Register test-only method or dataset plugins for the duration of the block, then remove them
    (a name that is already registered, by the same class, is left as it was)."""
    from bench import registry
    from bench.dataset import Dataset

    added = []
    for cls in classes:
        kind, table, register = (("dataset", registry._DATASET_CLASSES, registry.register_dataset)
                                 if issubclass(cls, Dataset) else
                                 ("method", registry._METHOD_CLASSES, registry.register_method))
        if table.get(cls.name) is not cls:
            register(cls)
            added.append((kind, table, cls.name))
    try:
        yield
    finally:
        for kind, table, name in added:
            table.pop(name, None)
            registry._ORIGINS.pop((kind, name), None)


@pytest.fixture(scope="session", autouse=True)
def test_methods():
    """The conftest's test-only methods, registered for the session."""
    with registered(CountingMethod, FailingMethod, LayeredMethod):
        yield
