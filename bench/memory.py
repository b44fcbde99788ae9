"""Memory estimates checked before anything is written: a huge `n` or `D` is refused with the
estimate and the fix, instead of failing at run time after the store, the caches and the first
records were written.

- Data: a dataset plugin may define `estimate_bytes()` (the synthetic generator does); it is
  compared with the machine's memory before the data is generated or loaded.
- Parameters: a method that builds its torch model with `build(train, ctx)` (the GNN and
  adversarial families do) is built once on PyTorch's `meta` device, which allocates nothing, and
  its parameters and buffers are counted. Weights, gradients and Adam's two moments make about four
  times the parameter bytes. Methods without `build` are not estimated.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

GIB = 2**30
TRAINING_COPIES = 4  # a parameter, its gradient, Adam's first and second moments


def machine_bytes(device: Any = None) -> int | None:
    """The memory a run can use: the GPU's for a CUDA device, else physical memory (capped by the
    cgroup's limit when there is one); None when unknown."""
    if device is not None and getattr(device, "type", "") == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(device.index or 0).total_memory)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and (total is None or int(text) < total):
            total = int(text)
    return total


def enlarged(params_cls: type, values: dict[str, Any], limit: int = 3) -> str:
    """'D=100000, layers=50': the integer parameters set above their defaults, largest first (what to lower)."""
    defaults = {f.name: f.default for f in dataclasses.fields(params_cls) if f.default is not dataclasses.MISSING}
    grown = [(v, k) for k, v in values.items() if isinstance(v, int) and not isinstance(v, bool)
             and isinstance(defaults.get(k), int) and v > defaults[k]]
    return ", ".join(f"{k}={v}" for v, k in sorted(grown, reverse=True)[:limit])


def data_excess(dataset: Any, available: int | None) -> tuple[str, str] | None:
    """When a dataset plugin's own estimate (`estimate_bytes()`, optional) exceeds `available`:
    ('needs about X of memory, more than the Y here', its parameters set above their defaults, see
    `enlarged`); None when it fits, or when the plugin or the machine cannot say."""
    estimate = getattr(dataset, "estimate_bytes", None)
    need = estimate() if callable(estimate) and available else None
    if need is None or need <= available:
        return None
    grown = enlarged(type(dataset.params), dataclasses.asdict(dataset.params))
    return f"needs about {gib(need)} of memory, more than the {gib(available)} here", grown


def model_bytes(method: Any, data: Any, seed: int = 0) -> int | None:
    """Bytes of a method's model (parameters and buffers) for `data`'s shapes, built on the meta
    device; None when the method has no `build` or it cannot be built that way. A model too large
    for PyTorch to size at all counts as infinitely large."""
    import torch

    from bench.method import FitContext

    if not callable(getattr(method, "build", None)):
        return None
    meta = torch.device("meta")
    try:
        with torch.device(meta):
            model = method.build(data, FitContext(seed=seed, device=meta))
    except MemoryError:
        return 2**63
    except RuntimeError as exc:
        return 2**63 if "overflow" in str(exc).lower() else None
    except Exception:  # noqa: BLE001 - an estimate only: the run itself reports what is wrong
        return None
    if not isinstance(model, torch.nn.Module):
        return None
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def training_bytes(model: int) -> int:
    """Memory of training a model of `model` parameter bytes with Adam (see TRAINING_COPIES)."""
    return model * TRAINING_COPIES


def gib(n: float) -> str:
    """Bytes as GiB with two significant digits (huge values in scientific notation)."""
    value = n / GIB
    return f"{value:.2g} GiB" if value < 1e6 else f"{value:.1e} GiB"
