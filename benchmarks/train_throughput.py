"""Training-step throughput of `pgnn_con` (fp32, bf16, compiled) against the release's own step.

All variants run in ONE process on the SAME batches, interleaved step by step: each of
`--steps` batches runs through every variant back to back (the order rotating), a repetition is
one pass, and the figures are medians over `--reps` repetitions (samples/s, and the ratio of two
variants within each repetition, with its range), so load on a shared machine hits every
variant alike.
Variants (each its own model copy, same initial weights):
  release       the release's training step re-implemented from its equations (benchmarks/release_step.py)
  fp32          ours, default settings
  bf16          ours, precision: bf16 (autocast)
  compile       ours, compile: true (torch.compile, inductor)
  compile_bf16  ours, both
Then, per variant: aten ops per step and host reads of device values per step (torch.profiler,
CPU activity: aten::item / _local_scalar_dense / nonzero / is_nonzero / equal), split into the
forward+backward part and the optimizer; on CUDA also GPU kernels, launch calls and host
synchronisations per step (torch.cuda.set_sync_debug_mode("warn") counts them) and ms per
step; and the test mAP (mean of image->text and text->image) after a small sweep-like run
(synthetic data, `--map-n` items, `--map-epochs` epochs) of each variant through `fit` (the release
step through its own loop).

Shapes (`--shape`: the standard features of each dataset; the released batch size of each is the
default `--batch`): mirflickr 4,096-d image, 1,386-d text, 24 labels, batch 100; nuswide 4,096 / 1,000 / 21, batch
2,048; mscoco 4,096 / 2,026 / 80, batch 512. All with 300-d label embeddings and D 1,024.

    python benchmarks/train_throughput.py [--device cpu|cuda|auto] [--shape mirflickr] [--batch N]
        [--reps 5] [--steps 10] [--variants release,fp32,bf16,compile] [--map-epochs 3] [--no-map]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate
from torch.profiler import ProfilerActivity, profile, record_function

from bench.hardware import cpu_summary
from bench.method import FitContext, resolve_device, validation_map
from bench.params import build
from bench.registry import get_dataset, get_method

sys.path.insert(0, str(Path(__file__).resolve().parent))
from release_step import ReleaseStep  # noqa: E402

SHAPES = {  # image dim, text dim, labels, released batch
    "mirflickr": (4096, 1386, 24, 100), "nuswide": (4096, 1000, 21, 2048), "mscoco": (4096, 2026, 80, 512)}
SYNC_OPS = ("aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero", "aten::equal")
OURS = {"fp32": {}, "bf16": {"precision": "bf16"}, "compile": {"compile": True},
        "compile_bf16": {"compile": True, "precision": "bf16"}}


def make_variant(name: str, data, params: dict, device: torch.device):
    """(method, step(x, t, y)) of one variant, its model built from seed 0."""
    entry = get_method("pgnn_con")
    extra = {} if name == "release" else OURS[name]
    method = entry.cls(build(entry.cls.Params, {**params, **extra}, "pgnn_con"))
    model = method.build(data, FitContext(seed=0, device=device)).train()
    p = method.params
    if name == "release":
        return method, ReleaseStep(model, p.lr, (p.adam_beta1, p.adam_beta2), p.alpha, p.beta, p.tau, p.gamma)
    opt = method.optimizer()
    amp, scaler = method._precision(device)
    loss_fn = method._loss_fn(device)
    return method, lambda x, t, y: method.train_step(x, t, y, opt, amp_dtype=amp, scaler=scaler, loss_fn=loss_fn)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _root(event) -> str:
    while event.cpu_parent is not None:
        if event.name.startswith("Optimizer.step"):
            return "optimizer"
        event = event.cpu_parent
    return "optimizer" if event.name.startswith("Optimizer.step") else "step"


def profile_steps(step, batches, k: int = 3) -> dict[str, float]:
    """aten ops and host reads per step, inside the optimizer's step and outside it."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for x, t, y in batches[:k]:
            with record_function("train_step"):
                step(x, t, y)
    counts = {"ops": 0, "ops_opt": 0, "syncs": 0, "syncs_opt": 0}
    for e in prof.events():
        where = "_opt" if _root(e) == "optimizer" else ""
        if e.name.startswith("aten::"):
            counts["ops" + where] += 1
        if e.name in SYNC_OPS:
            counts["syncs" + where] += 1
    return {key: val / k for key, val in counts.items()}


def cuda_counts(step, batches, k: int = 3) -> dict[str, float]:
    """On CUDA, per step: GPU kernels run (torch.profiler's CUDA activity, copies and memsets left
    out), kernel launch calls on the host, and host synchronisations (torch's sync debug mode
    warns once for each: .item(), bool(tensor), nonzero, device-to-host copies, ...)."""
    import warnings

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for x, t, y in batches[:k]:
            step(x, t, y)
        torch.cuda.synchronize()
    cuda = torch.autograd.DeviceType.CUDA
    kernels = sum(1 for e in prof.events() if e.device_type == cuda and not e.name.startswith(("Memcpy", "Memset")))
    launches = sum(1 for e in prof.events() if e.name.startswith(("cudaLaunchKernel", "cuLaunchKernel")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for x, t, y in batches[:k]:
                step(x, t, y)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message).lower() for w in caught)
    return {"gpu_kernels": kernels / k, "launches": launches / k, "cuda_syncs": syncs / k}


def throughput(args, device: torch.device) -> dict[str, dict]:
    cls = get_dataset("synthetic")
    n = args.steps * args.batch
    image_dim, text_dim, labels, _ = SHAPES[args.shape]
    data = cls(build(cls.Params, {"n": n, "image_dim": image_dim, "text_dim": text_dim, "num_labels": labels,
                                  "groups": 6, "embedding_dim": 300}, "synthetic")).load()
    x = torch.as_tensor(data.image, device=device)
    t = torch.as_tensor(data.text, device=device)
    y = torch.as_tensor(data.labels, device=device).float()
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(0)).split(args.batch)
    batches = [(x[r.to(device)], t[r.to(device)], y[r.to(device)]) for r in rows]
    params = {"batch": args.batch, "D": args.D}
    steps = {}
    for name in args.variants:
        t0 = time.perf_counter()
        _, step = make_variant(name, data, params, device)
        for xb, tb, yb in batches[:2]:  # warm-up (compilation, lazy optimizer state)
            step(xb, tb, yb)
        sync(device)
        steps[name] = step
        print(f"  {name}: set-up and 2 warm-up steps {time.perf_counter() - t0:.1f}s", flush=True)
    # finest interleaving: every batch runs through every variant back to back (the order rotating
    # from batch to batch), so a change of load on the machine hits all variants alike
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.reps):
        spent = dict.fromkeys(names, 0.0)
        for i, (xb, tb, yb) in enumerate(batches):
            for name in names[i % len(names):] + names[:i % len(names)]:
                sync(device)
                t0 = time.perf_counter()
                steps[name](xb, tb, yb)
                sync(device)
                spent[name] += time.perf_counter() - t0
        for name in names:
            times[name].append(spent[name])
    out = {}
    for name, step in steps.items():
        out[name] = {"samples/s": statistics.median(n / s for s in times[name]),
                     "per_rep": times[name], **profile_steps(step, batches),
                     **(cuda_counts(step, batches) if device.type == "cuda" else {})}
    return out


def ratio(res: dict, name: str, base: str) -> str:
    """Median and range over repetitions of the per-repetition speed ratio name / base."""
    if base not in res:
        return "-"
    r = sorted(b / a for a, b in zip(res[name]["per_rep"], res[base]["per_rep"]))
    return f"{statistics.median(r):.2f}x ({r[0]:.2f}-{r[-1]:.2f})"


def map_sweep(args, device: torch.device) -> dict[str, float]:
    """Test mAP of each variant after `--map-epochs` epochs on synthetic data (default shapes)."""
    cls = get_dataset("synthetic")
    data = cls(build(cls.Params, {"n": args.map_n}, "synthetic")).load()
    n_test = n_val = args.map_n // 10
    idx = np.random.default_rng(0).permutation(data.n)
    test, val, train = (data.subset(idx[:n_test]), data.subset(idx[n_test:n_test + n_val]),
                        data.subset(idx[n_test + n_val:]))
    params = {"batch": args.batch, "D": args.D, "epochs": args.map_epochs}
    out = {}
    for name in args.variants:
        t0 = time.perf_counter()
        if name == "release":
            method, step = make_variant(name, train, params, device)
            x, t = torch.as_tensor(train.image, device=device), torch.as_tensor(train.text, device=device)
            y = torch.as_tensor(train.labels, device=device).float()
            gen = torch.Generator().manual_seed(0)
            for _ in range(args.map_epochs):
                method.model.train()
                for r in torch.randperm(train.n, generator=gen).split(args.batch):
                    if r.numel() >= 2:
                        r = r.to(device)
                        step(x[r], t[r], y[r])
        else:
            entry = get_method("pgnn_con")
            method = entry.cls(build(entry.cls.Params, {**params, **OURS[name]}, "pgnn_con"))
            method.fit(train, val, FitContext(seed=0, device=device))
        out[name] = validation_map(method, test, device=device)
        print(f"  {name}: test mAP {out[name]:.4f} ({time.perf_counter() - t0:.1f}s)", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="mirflickr",
                    help="feature and label dimensions of a standard benchmark")
    ap.add_argument("--batch", type=int, default=None, help="default: the released batch of --shape")
    ap.add_argument("--D", type=int, default=1024, help="common-space dimension")
    ap.add_argument("--steps", type=int, default=10, help="steps per variant per repetition")
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions (median)")
    ap.add_argument("--variants", default="release,fp32,bf16,compile",
                    help="comma list of release, fp32, bf16, compile, compile_bf16")
    ap.add_argument("--map-n", type=int, default=2000, help="items of the synthetic mAP run")
    ap.add_argument("--map-epochs", type=int, default=3)
    ap.add_argument("--no-map", action="store_true", help="skip the mAP run")
    args = ap.parse_args()
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.batch is None:
        args.batch = SHAPES[args.shape][3]
    unknown = [v for v in args.variants if v != "release" and v not in OURS]
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}; choose from release, {', '.join(OURS)}")
    device = resolve_device(args.device)
    load = os.getloadavg()
    print(cpu_summary())
    print(f"device {device}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; shape {args.shape} {SHAPES[args.shape][:3]}, "
          f"batch {args.batch}, D {args.D}")
    print("throughput (interleaved):", flush=True)
    res = throughput(args, device)
    maps = {} if args.no_map else (print("mAP run:", flush=True) or map_sweep(args, device))
    rows = []
    for name, r in res.items():
        rows.append([name, f"{r['samples/s']:,.0f}", ratio(res, name, "release"), ratio(res, name, "fp32"),
                     f"{r['ops']:.0f}", f"{r['ops_opt']:.0f}", f"{r['syncs']:.0f}", f"{r['syncs_opt']:.0f}",
                     f"{maps[name]:.4f}" if name in maps else "-"])
    print(tabulate(rows, headers=["variant", "samples/s", "vs release", "vs fp32", "aten ops/step",
                                  "  in optimizer", "host reads/step", "  in optimizer", "test mAP"]))
    if device.type == "cuda":
        print(tabulate([[name, f"{r['gpu_kernels']:.0f}", f"{r['launches']:.0f}", f"{r['cuda_syncs']:.0f}",
                         f"{1000 * args.batch / r['samples/s']:.2f}"] for name, r in res.items()],
                       headers=["variant", "GPU kernels/step", "launch calls/step", "host syncs/step",
                                "ms/step"]))
    print("samples/s: median over repetitions; ratios: median (min-max) of per-repetition ratios")
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
