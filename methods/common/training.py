"""What the deep plugins' `fit` and `encode` share: seeded construction, the training arrays as
tensors, shuffled minibatches, per-epoch loss means, and the encode guard.

None of these helpers draws a random number of its own: `seeded` forks torch's global generator
and `shuffled_batches` uses the generator it is given, so a plugin that uses them trains exactly
as it would with the same lines written inline.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.data import CrossModalData

from .layers import encode_in_batches


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded by `seed` and restore the global state after.

    Model initialisation then depends on the run seed alone, not on what ran before it in the
    process, and code after the block sees the generator as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass
class TrainTensors:
    """Training arrays on the device: features, float labels, presence masks (None = all present)."""

    image: torch.Tensor
    text: torch.Tensor
    labels: torch.Tensor
    image_present: torch.Tensor | None = None
    text_present: torch.Tensor | None = None

    def rows(self, index: torch.Tensor) -> TrainTensors:
        """The rows `index` of every array (a mask that is None stays None)."""
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return TrainTensors(self.image[index], self.text[index], self.labels[index],
                            pick(self.image_present), pick(self.text_present))


def train_tensors(data: CrossModalData, device: torch.device | str, dtype: torch.dtype | None = None,
                  masks_device: torch.device | str | None = None) -> TrainTensors:
    """`data`'s arrays as tensors on `device`: features in `dtype` (default: as stored), labels as
    float32, presence masks as bool tensors where the data has them (on `masks_device` when given,
    e.g. the host for a plugin that plans its batches there)."""
    on = device if masks_device is None else masks_device
    mask = lambda a: None if a is None else torch.as_tensor(a, device=on).bool()  # noqa: E731
    return TrainTensors(torch.as_tensor(data.image, device=device, dtype=dtype),
                        torch.as_tensor(data.text, device=device, dtype=dtype),
                        torch.as_tensor(data.labels, device=device).float(),
                        mask(data.image_present), mask(data.text_present))


def shuffled_batches(n: int, batch: int, generator: torch.Generator, device: torch.device | str = "cpu"
                     ) -> list[torch.Tensor]:
    """A fresh permutation of range(n) drawn from `generator` (on the host), cut into batches of
    `batch` rows (the last one may be smaller) and moved to `device`."""
    return list(torch.randperm(n, generator=generator).to(device).split(batch))


class EpochMeans:
    """The mean of each loss part over an epoch's batches.

    The sums stay tensors on the device (adding a batch never reads a value back to the host);
    `means()` reads them once per epoch. Half-precision parts (autocast) are summed in float32.
    """

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.batches = 0

    def add(self, parts: Mapping[str, torch.Tensor]) -> None:
        """Add one batch's loss parts."""
        for key, value in parts.items():
            value = value.detach()
            if value.dtype in (torch.float16, torch.bfloat16):
                value = value.float()
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.batches += 1

    def means(self, batches: int | None = None) -> dict[str, float]:
        """Each part's sum divided by the number of batches added (or by `batches` when given)."""
        count = max(1, self.batches if batches is None else batches)
        return {key: float(total) / count for key, total in self.sums.items()}


def require_fitted(method: Any, attribute: str = "model") -> None:
    """Raise RuntimeError unless `method.<attribute>` was set by `fit` (encode before fit)."""
    if getattr(method, attribute, None) is None:
        raise RuntimeError(f"{method.name}: call fit() before encode()")


def encode_pair(model: nn.Module, image_fn: Callable[[torch.Tensor], torch.Tensor],
                text_fn: Callable[[torch.Tensor], torch.Tensor], image: np.ndarray | None,
                text: np.ndarray | None, device: torch.device, dim: int
                ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """`model` in eval mode, then `image_fn` over the rows of `image` and `text_fn` over those of
    `text` in bounded chunks (`encode_in_batches`): float32 (n, dim) arrays, None for None."""
    model.eval()
    return (encode_in_batches(image_fn, image, device, dim), encode_in_batches(text_fn, text, device, dim))


__all__ = ["EpochMeans", "TrainTensors", "encode_pair", "require_fitted", "seeded", "shuffled_batches",
           "train_tensors"]
