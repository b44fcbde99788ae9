"""Training throughput of `pgnn_con` on MIRFlickr-shaped synthetic data (samples per second).

Default shape: 18,000 training items, 4,096-d image, 1,386-d text, 24 labels, 300-d label
embeddings, batch 100, D = 1024 (the released MIRFlickr setting). The figure is one full training
epoch (forward, backward, Adam step on every minibatch), timed between the end of epoch 1's
validation and the end of epoch 2's training, so start-up and validation are excluded.

    python benchmarks/train_throughput.py [--device cpu|cuda|auto] [--n 18000] [--batch 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench.method import FitContext, resolve_device
from bench.params import build
from bench.registry import get_dataset, get_method


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--method", default="pgnn_con")
    ap.add_argument("--n", type=int, default=18000, help="training items")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--D", type=int, default=1024, help="common-space dimension")
    args = ap.parse_args()
    device = resolve_device(args.device)

    cls = get_dataset("synthetic")
    t0 = time.perf_counter()
    data = cls(build(cls.Params, {"n": args.n + 200, "image_dim": 4096, "text_dim": 1386, "num_labels": 24,
                                  "groups": 6, "embedding_dim": 300}, "synthetic")).load()
    train, val = data.subset(np.arange(args.n)), data.subset(np.arange(args.n, data.n))
    print(f"data: {train.n} x {train.image.shape[1]} image, {train.text.shape[1]} text, "
          f"{train.num_labels} labels ({time.perf_counter() - t0:.1f}s to generate)")

    entry = get_method(args.method)
    params = build(entry.cls.Params, {"epochs": 2, "batch": args.batch, "D": args.D, **entry.fixed}, args.method)
    marks: dict[str, float] = {}
    ctx = FitContext(seed=0, device=device)
    ctx.on_report.append(lambda epoch, _: marks.setdefault(f"reported{epoch}", time.perf_counter()))
    ctx.on_log.append(lambda step, _: marks.setdefault(f"logged{step}", time.perf_counter()))
    torch.manual_seed(0)
    start = time.perf_counter()
    entry.cls(params).fit(train, val, ctx)
    if device.type == "cuda":
        torch.cuda.synchronize()
    epoch2 = marks["logged2"] - marks["reported1"]
    epoch1 = marks["logged1"] - start
    print(f"{args.method} on {device} ({torch.get_num_threads()} CPU threads), batch {args.batch}, D {args.D}: "
          f"epoch 1 (with set-up) {epoch1:.1f}s, epoch 2 {epoch2:.1f}s")
    print(f"throughput: {train.n / epoch2:,.0f} samples/s")


if __name__ == "__main__":
    main()
