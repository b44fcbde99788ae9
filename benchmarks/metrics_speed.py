"""Time bench.metrics.mean_average_precision against the field's usual mAP@all evaluation.

    python benchmarks/metrics_speed.py [--n 5000] [--dim 1024] [--labels 24] [--memory 20000]
                                       [--device cpu|cuda]

(a) the usual evaluation: scipy cdist(..., "cosine"), then a Python loop over queries
    (argsort, cumulative precision at each relevant rank);
(b) bench.metrics.mean_average_precision (torch, chunked) on --device (default cpu; on a GPU
    after one small warm-up call, and counting the copies of the inputs to the device).
Prints both times, the speed-up and |mAP_a - mAP_b|; exits 1 if that exceeds 1e-6.
With --memory N, also measures in a fresh process the peak resident memory that an N x N
mAP@all adds on top of its inputs (ru_maxrss, which sees torch's allocations too).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.distance import cdist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from bench.hardware import cpu_summary  # noqa: E402
from bench.metrics import DEFAULT_MAX_BYTES, mean_average_precision  # noqa: E402

TOLERANCE = 1e-6


def make_data(n: int, dim: int, n_labels: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Image/text embeddings that carry their labels plus noise (float32), and multi-hot labels."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, n_labels)) < 2.0 / n_labels).astype(np.float32)
    labels[np.arange(n), rng.integers(0, n_labels, n)] = 1.0  # at least one label per item
    image = labels @ rng.standard_normal((n_labels, dim), dtype=np.float32)
    image += 3 * rng.standard_normal((n, dim), dtype=np.float32)
    text = labels @ rng.standard_normal((n_labels, dim), dtype=np.float32)
    text += 3 * rng.standard_normal((n, dim), dtype=np.float32)
    return image, text, labels


def field_map(query: np.ndarray, retrieval: np.ndarray, query_labels: np.ndarray,
              retrieval_labels: np.ndarray) -> float:
    """mAP@all as cross-modal retrieval papers usually compute it: cdist, then one query at a time."""
    dist = cdist(query, retrieval, "cosine")
    aps = []
    for i in range(len(query)):
        order = np.argsort(dist[i], kind="stable")
        relevant = (retrieval_labels[order] @ query_labels[i]) > 0
        if relevant.any():
            precision = np.cumsum(relevant) / np.arange(1, len(relevant) + 1)
            aps.append(precision[relevant].mean())
    return float(np.mean(aps))


def timed(fn, *args) -> tuple[float, float]:
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def speed(n: int, dim: int, n_labels: int, device: str = "cpu") -> int:
    """Compare (a) and (b); return the exit status."""
    image, text, labels = make_data(n, dim, n_labels)
    print(f"n={n} dim={dim} labels={n_labels}, image->text mAP@all, torch {torch.__version__} "
          f"with {torch.get_num_threads()} threads, (b) on {device}")
    if device != "cpu":  # CUDA context and kernels loaded before the clock starts
        mean_average_precision(image[:64], text[:64], labels[:64], labels[:64], device=device)
    map_b, time_b = timed(lambda *a: mean_average_precision(*a, device=device), image, text, labels, labels)
    map_a, time_a = timed(field_map, image, text, labels, labels)
    diff = abs(map_a - map_b)
    print(f"(a) cdist + per-query loop : {time_a:8.2f} s   mAP = {map_a:.8f}")
    print(f"(b) bench.metrics ({device:4s})   : {time_b:8.2f} s   mAP = {map_b:.8f}")
    print(f"speed-up (a)/(b)           : {time_a / time_b:8.1f}x")
    print(f"|mAP_a - mAP_b|            : {diff:.2e} ({'ok' if diff < TOLERANCE else 'FAIL'}, must be < {TOLERANCE})")
    return 0 if diff < TOLERANCE else 1


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB (Linux: /proc and ru_maxrss in KiB)."""
    current = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
    return current / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(n: int, dim: int, n_labels: int) -> None:
    """In a fresh process: peak RSS added by an n x n mAP@all on top of its inputs."""
    image, text, labels = make_data(n, dim, n_labels)
    current, peak_before = rss_mib()
    value, seconds = timed(mean_average_precision, image, text, labels, labels)
    _, peak_after = rss_mib()
    inputs = (image.nbytes + text.nbytes + labels.nbytes) / 2**20
    print(f"memory: {n} x {n} mAP@all (dim {dim}) = {value:.6f} in {seconds:.1f} s; max_bytes = "
          f"{DEFAULT_MAX_BYTES / 2**20:.0f} MiB")
    print(f"  RSS before the call {current:.0f} MiB (peak so far {peak_before:.0f} MiB; inputs {inputs:.0f} MiB)")
    print(f"  peak RSS after the call {peak_after:.0f} MiB -> the metric added at most "
          f"{peak_after - current:.0f} MiB at its peak (ru_maxrss growth measured from the current RSS)")
    print(f"  for scale: the full {n} x {n} float32 similarity matrix alone would be {4 * n * n / 2**20:.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="queries = retrieval items (default 5000)")
    parser.add_argument("--dim", type=int, default=1024, help="embedding width (default 1024)")
    parser.add_argument("--labels", type=int, default=24, help="number of labels (default 24)")
    parser.add_argument("--device", default="cpu", help="where (b) computes: cpu (default), cuda, cuda:N")
    parser.add_argument("--memory", type=int, metavar="N", help="also measure peak memory of an N x N mAP@all")
    parser.add_argument("--memory-only", action="store_true", help="skip the speed comparison")
    parser.add_argument("--_memory-child", type=int, dest="memory_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.dim, args.labels)
        return 0
    print(cpu_summary())
    status = 0 if args.memory_only else speed(args.n, args.dim, args.labels, args.device)
    if args.memory:
        # A fresh process, so the peak is not inflated by the speed comparison's arrays.
        child = [sys.executable, __file__, "--_memory-child", str(args.memory), "--dim", str(args.dim),
                 "--labels", str(args.labels)]
        status = max(status, subprocess.run(child, check=False).returncode)
    return status


if __name__ == "__main__":
    sys.exit(main())
