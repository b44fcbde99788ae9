"""Time and peak memory of the diagnostics of one run, from its saved embeddings.

    python benchmarks/diagnostics_cost.py [--items 2000 5000] [--dims 256 1024] [--labels 24 80]
                                          [--tsne-items 500] [--skip-tsne]

For every (items, D, labels) it builds constructed embeddings (labels with power-law
frequencies, about 2.5 per item; both modalities carry them plus noise, text shifted off the
image centroid), and measures each step in a fresh process, so a step's peak is its own:

    save      bench.embeddings.save_test_embeddings (float16 npz; file size printed)
    load      bench.embeddings.load_embeddings
    gap       bench.diagnostics.modality_gap (5-fold probe, centroids, alignment, uniformity)
    label_ap  bench.diagnostics.per_label_ap (both directions, every label)
    gallery   bench.diagnostics.retrieval_gallery (3 queries, top 5, both directions, 1 model)
    tsne      bench.diagnostics.tsne_maps for ONE model on --tsne-items items (once per D: its
              cost does not depend on the run's size); a report pays it once per model shown

Peak memory = the process's peak resident set (ru_maxrss) minus its value once the inputs
exist and every step has run once on 40 items (imports and one-time set-up excluded: a report
pays them once), so it is what the step adds. `uptime` is printed before and after: timings scale with load.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

STEPS = ("save", "load", "gap", "label_ap", "gallery")


def make_run(n: int, dim: int, n_labels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 image / text embeddings of n items and uint8 multi-hot labels (about 2.5 per item)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / (1 + np.arange(n_labels)) ** 0.8
    labels = (rng.random((n, n_labels)) < p * 2.5 / p.sum()).astype(np.uint8)
    labels[np.arange(n), rng.integers(0, n_labels, n)] = 1
    proto = rng.standard_normal((n_labels, dim), dtype=np.float32)
    shared = labels @ proto + 2 * rng.standard_normal((n, dim), dtype=np.float32)
    image = shared + rng.standard_normal((n, dim), dtype=np.float32)
    text = shared + rng.standard_normal((n, dim), dtype=np.float32) + 0.5
    return image, text, labels


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(step: str, n: int, dim: int, n_labels: int, tsne_items: int, folder: Path) -> dict:
    """Run one step on constructed inputs in this process; seconds and the peak it added (MB)."""
    from bench import diagnostics
    from bench.embeddings import load_embeddings, save_test_embeddings

    image, text, labels = make_run(n, dim, n_labels)
    path = folder / f"e_{n}_{dim}_{n_labels}.npz"
    if step != "save":
        save_test_embeddings(path, image, text, labels, max_items=n)
        saved = load_embeddings(path)
    _warm_up(diagnostics)
    base = _peak_mb()
    start = time.perf_counter()
    extra: dict = {}
    if step == "save":
        extra["file_mb"] = save_test_embeddings(path, image, text, labels, max_items=n)["bytes"] / 1e6
    elif step == "load":
        load_embeddings(path)
    elif step == "gap":
        extra.update(diagnostics.modality_gap(saved.image, saved.text))
    elif step == "label_ap":
        diagnostics.per_label_ap(saved.image, saved.text, saved.labels)
    elif step == "gallery":
        diagnostics.retrieval_gallery({"m": (saved.image, saved.text)}, saved.labels, queries=3, k=5)
    elif step == "tsne":
        diagnostics.tsne_maps({"m": (saved.image, saved.text)}, max_items=tsne_items)
    return {"seconds": time.perf_counter() - start, "peak_mb": _peak_mb() - base, **extra}


def _warm_up(diagnostics) -> None:
    """Import scikit-learn's parts and run every step once on 40 items: one-time costs (imports,
    torch's thread pool) stay out of the figures, since a report pays them once, not per run."""
    image, text, labels = make_run(40, 8, 4, seed=1)
    diagnostics.modality_gap(image, text)
    diagnostics.per_label_ap(image, text, labels)
    diagnostics.tsne_maps({"m": (image, text)}, max_items=20)


def _child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.step, args.n, args.dim, args.n_labels, args.tsne_items, Path(tmp))
    print(json.dumps(result))


def _run_step(step: str, n: int, dim: int, n_labels: int, tsne_items: int) -> dict:
    cmd = [sys.executable, __file__, "--step", step, "--n", str(n), "--dim", str(dim), "--n-labels", str(n_labels),
           "--tsne-items", str(tsne_items)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[2000, 5000])
    parser.add_argument("--dims", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--labels", type=int, nargs="+", default=[24, 80])
    parser.add_argument("--tsne-items", type=int, default=500)
    parser.add_argument("--skip-tsne", action="store_true")
    parser.add_argument("--step", choices=(*STEPS, "tsne"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--n-labels", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        _child(args)
        return
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(f"{'items':>6} {'D':>5} {'labels':>6} {'step':>9} {'seconds':>8} {'peak MB':>8}  notes")
    for dim in args.dims:
        for n in args.items:
            for n_labels in args.labels:
                total = 0.0
                for step in STEPS:
                    r = _run_step(step, n, dim, n_labels, args.tsne_items)
                    total += r["seconds"] if step != "save" else 0.0
                    note = (f"file {r['file_mb']:.2f} MB" if step == "save" else
                            f"probe {r['diag/probe_acc']:.3f}" if step == "gap" else "")
                    print(f"{n:>6} {dim:>5} {n_labels:>6} {step:>9} {r['seconds']:>8.2f} {r['peak_mb']:>8.1f}  {note}")
                print(f"{n:>6} {dim:>5} {n_labels:>6} {'= report':>9} {total:>8.2f} {'':>8}  load+gap+label_ap+gallery")
        if not args.skip_tsne:
            r = _run_step("tsne", max(args.items), dim, min(args.labels), args.tsne_items)
            print(f"{args.tsne_items:>6} {dim:>5} {'':>6} {'tsne':>9} {r['seconds']:>8.2f} {r['peak_mb']:>8.1f}  "
                  f"one model, {2 * args.tsne_items} points")
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
