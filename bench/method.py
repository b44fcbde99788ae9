"""The method contract (`Method`), the fit context handed to it, and the shared epoch loop."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from bench.data import CrossModalData


@dataclass(frozen=True)
class Variant:
    """A registered named variant of a method family: fixed parameter values + a description."""

    fixed: dict[str, Any]
    description: str


@dataclass
class _NoParams:
    pass


class Method:
    """Base class for method plugins.

    Subclasses set `name`, `description`, a `Params` dataclass (typed hyperparameters with
    defaults, see `bench.params.spec`), optionally `variants` (ablations fixing some
    parameters), `presets` (per-dataset defaults, e.g. the released hyperparameters) and
    `test_params`. The harness calls `fit(train, val, ctx)` once, then `encode(image=..., text=...)`.
    Plugins never touch files, MLflow or Optuna: all they need comes from `ctx`.

    `supports_missing`: the method learns from training rows that lack a modality (it reads
    `train.image_present` / `train.text_present`); otherwise the harness's `missing_policy`
    drops or zero-fills such rows before `fit`.

    `test_params`: parameter values that make a fit on a few hundred synthetic rows take well
    under a second on a CPU (a few epochs, small widths), like benchopt's `test_config`. The
    test suite trains every registered method and variant with them and checks what comes out,
    so a new plugin is tested without being added to any list. Empty (the defaults) suits a
    closed-form method that is fast already.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type] = _NoParams
    variants: ClassVar[dict[str, Variant]] = {}
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    supports_missing: ClassVar[bool] = False
    test_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: Any = None) -> None:
        self.params = params if params is not None else self.Params()

    def check_device(self, device: torch.device) -> None:
        """Raise ConfigError when these parameters cannot run on `device`. `bench run` and `bench tune`
        call it before anything is written (`bench.preflight.check_devices`); default: any device will do."""

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """Optuna search space: parameter values suggested from `trial` (empty by default)."""
        return {}

    def fit(self, train: CrossModalData, val: CrossModalData, ctx: FitContext) -> None:
        """Learn from `train`; select the best epoch on `val` (never on test)."""
        raise NotImplementedError

    def encode(self, image: np.ndarray | None = None, text: np.ndarray | None = None
               ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Map raw features into the common space: (image_embeddings, text_embeddings)."""
        raise NotImplementedError


class Pruned(Exception):
    """Raised from `FitContext.report` when a tuner decides to stop this trial early."""


@dataclass
class FitContext:
    """What a method may use while fitting: seed, device, logging, best-epoch reporting.

    `log(step, **metrics)` records per-step metrics; `report(epoch, val_map)` records the
    validation score of an epoch (feeds best-epoch selection, early stopping and pruning).
    """

    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    time_budget_s: float | None = None
    show_progress: bool = False
    label: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    on_log: list[Callable[[int, dict[str, float]], None]] = field(default_factory=list)
    on_report: list[Callable[[int, float], None]] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_map: float | None = None
    started: float = field(default_factory=time.monotonic)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def log(self, step: int, **metrics: float) -> None:
        """Record metrics for a step (epoch); forwarded to tracking."""
        clean = {k: float(v) for k, v in metrics.items()}
        for row in self.history:
            if row.get("step") == step:
                row.update(clean)
                break
        else:
            self.history.append({"step": step, **clean})
        for hook in self.on_log:
            hook(step, clean)

    def report(self, epoch: int, val_map: float) -> None:
        """Record the validation mAP of an epoch; may raise `Pruned` when a tuner says stop."""
        self.log(epoch, val_map=val_map)
        if self.best_val_map is None or val_map > self.best_val_map:
            self.best_val_map, self.best_epoch = float(val_map), epoch
        for hook in self.on_report:
            hook(epoch, val_map)

    def artifact(self, name: str, array: Any, axis_labels: list[str] | None = None) -> None:
        """Keep a small array the harness should store with the run (record + MLflow), e.g. a
        method's label adjacency: `ctx.artifact("label_adjacency", A, axis_labels=train.label_names)`.
        The report draws `label_adjacency` as a heatmap. At most 250,000 finite values."""
        arr = np.asarray(array.detach().cpu() if isinstance(array, torch.Tensor) else array, dtype=float)
        if not name or not name.replace("_", "").isalnum():
            raise ValueError(f"artifact name {name!r}: use letters, digits and underscores")
        if arr.size > 250_000 or not np.isfinite(arr).all():
            raise ValueError(f"artifact {name!r}: {arr.size} values (at most 250,000, all finite)")
        labels = [str(x) for x in axis_labels] if axis_labels is not None else None
        self.artifacts[name] = {"shape": list(arr.shape), "data": arr.tolist(), "axis_labels": labels}

    def out_of_time(self) -> bool:
        """True once the time budget (if any) is spent."""
        return self.time_budget_s is not None and time.monotonic() - self.started > self.time_budget_s

    def generator(self, offset: int = 0) -> torch.Generator:
        """A torch generator seeded from the run seed (on CPU; use for shuffling)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available (else mps, else cpu); otherwise the named device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    from bench.errors import BenchError

    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"device '{name}' requested but CUDA is not available here; use device: auto or cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BenchError(f"device '{name}' requested but MPS is not available here; use device: auto or cpu")
    return device


def validation_map(method: Method, val: CrossModalData, device: torch.device | None = None) -> float:
    """Mean of image->text and text->image mAP@all on the validation split (queries = retrieval)."""
    from bench.metrics import mean_average_precision

    img, txt = method.encode(image=val.image, text=val.text)
    i2t = mean_average_precision(img, txt, val.labels, val.labels, device=device)
    t2i = mean_average_precision(txt, img, val.labels, val.labels, device=device)
    return 0.5 * (i2t + t2i)


@dataclass
class EpochResult:
    """Outcome of `run_epochs`: best epoch, its validation mAP, epochs actually run."""

    best_epoch: int
    best_val_map: float
    epochs_run: int
    stopped_early: bool


def run_epochs(
    ctx: FitContext,
    module: torch.nn.Module,
    train_epoch: Callable[[int], dict[str, float]],
    validate: Callable[[], float],
    epochs: int,
    patience: int | None = None,
    first_epoch: int = 1,
) -> EpochResult:
    """The shared training loop: train, validate, keep the best epoch's weights, stop early.

    `train_epoch(epoch)` trains one epoch and returns loss values to log; `validate()` returns
    the validation mAP. The state of `module` with the best validation mAP is restored at the
    end. Patience counts epochs without improvement; `None` disables early stopping.
    Epochs are numbered from `first_epoch` (a later training stage continues the count).
    """
    from bench.progress import progress

    best_state: dict[str, torch.Tensor] | None = None
    best, best_epoch, since_best, ran = -math.inf, 0, 0, 0
    stopped = False
    bar = progress(range(first_epoch, first_epoch + epochs), total=epochs, desc=f"epochs {ctx.label}".strip(),
                   enabled=ctx.show_progress, leave=False)
    for epoch in bar:
        module.train()
        losses = train_epoch(epoch)
        bad = [k for k, v in losses.items() if not math.isfinite(float(v))]
        if bad:
            raise FloatingPointError(f"loss {bad[0]} became {losses[bad[0]]} at epoch {epoch}; "
                                     "lower the learning rate or check the input features")
        ctx.log(epoch, **losses)
        module.eval()
        with torch.no_grad():
            score = float(validate())
        ran = epoch
        ctx.report(epoch, score)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(val_map=f"{score:.4f}", best=f"{max(best, score):.4f}")
        if score > best:
            best, best_epoch, since_best = score, epoch, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
        else:
            since_best += 1
            if patience is not None and since_best >= patience:
                stopped = True
                break
        if ctx.out_of_time():
            stopped = True
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return EpochResult(best_epoch=best_epoch, best_val_map=best, epochs_run=ran, stopped_early=stopped)


def param_dict(method: Method) -> dict[str, Any]:
    """The method's hyperparameters as a plain dict."""
    return dataclasses.asdict(method.params) if dataclasses.is_dataclass(method.params) else {}


__all__ = ["EpochResult", "FitContext", "Method", "Pruned", "Variant", "param_dict",
           "resolve_device", "run_epochs", "validation_map"]
