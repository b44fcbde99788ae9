"""Peak resident memory of fitting and encoding `kcca` on MIRFlickr-shaped random data.

    python benchmarks/kcca_memory.py [--n 20000] [--rank 1024] [--image-dim 4096] [--text-dim 1386]

Prints the peak RSS (ru_maxrss, which sees torch's allocations) after loading the data, and
after fit + encode of all rows; the difference is what KCCA itself adds.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

from bench.data import make_data
from bench.hardware import cpu_summary
from bench.method import FitContext
from bench.params import build
from bench.registry import get_method


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rank", type=int, default=1024)
    ap.add_argument("--image-dim", type=int, default=4096)
    ap.add_argument("--text-dim", type=int, default=1386)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    labels = (rng.random((args.n, 24)) < 0.15).astype(np.uint8)
    labels[:, 0] = 1
    image = rng.random((args.n, args.image_dim), dtype=np.float32)
    text = (rng.random((args.n, args.text_dim), dtype=np.float32) < 0.01).astype(np.float32)
    data = make_data("random", image, text, labels)
    del image, text
    base = peak_mb()
    cls = get_method("kcca").cls
    method = cls(build(cls.Params, {"rank": args.rank}, "kcca"))
    t0 = time.perf_counter()
    method.fit(data, data, FitContext())
    img, txt = method.encode(image=data.image, text=data.text)
    dt = time.perf_counter() - t0
    print(f"n={args.n} rank={args.rank} image={args.image_dim}-d text={args.text_dim}-d: "
          f"peak RSS after loading {base:.0f} MiB, after fit+encode {peak_mb():.0f} MiB "
          f"(KCCA adds {peak_mb() - base:.0f} MiB); fit+encode {dt:.1f} s; embeddings {img.shape}, {txt.shape}")
    print(f"{cpu_summary()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
