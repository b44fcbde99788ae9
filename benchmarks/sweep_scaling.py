"""Wall time of the same small sweep serially and on 1 and 2 Dask workers, interleaved.

Each measurement is a fresh `bench run` process into a fresh results folder (the dataset split
cache is shared, as in real use), so start-up, cluster start, dispatch and record writing are
all counted. Prints the median of each configuration over the repeats, the ratio of 2 workers
to serial (target <= 0.6 on 2 cores) and the dispatch overhead per run, (1 worker - serial with
1 thread) / runs (target < 1 s), with `uptime` beside the absolute figures.

    python benchmarks/sweep_scaling.py [--seeds 6] [--epochs 6] [--repeats 2] [--mlflow]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = """
name: scaling
seeds: {seeds}
split: {{val: 0.1, test: 0.2, seed: 0}}
datasets:
  - name: synthetic
    params: {{n: {n}}}
methods:
  - name: pgnn_con/no_gan
    params: {{epochs: {epochs}, D: 128}}
"""


def uptime() -> str:
    """The load line of `uptime` (or the load averages from /proc)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load averages " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def one(sweep: Path, work: Path, cache: Path, extra: list[str], mlflow: bool) -> float:
    """Seconds of one fresh `bench run` invocation into a fresh results folder."""
    results = Path(tempfile.mkdtemp(dir=work))
    (results / "cache").symlink_to(cache, target_is_directory=True)
    cmd = [sys.executable, "-c", "from bench.cli import main; main()", "run", str(sweep), "--results", str(results),
           *([] if mlflow else ["--no-mlflow"]), *extra]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(extra) or 'serial'} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    shutil.rmtree(results, ignore_errors=True)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=6, help="runs in the sweep (one per seed)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--n", type=int, default=1500, help="synthetic rows")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--mlflow", action="store_true", help="track to the embedded sqlite store too")
    args = ap.parse_args()
    configs = {"serial (default threads)": [], "serial (1 thread)": ["--threads", "1"],
               "1 worker": ["--workers", "1"], "2 workers": ["--workers", "2"]}
    times: dict[str, list[float]] = {k: [] for k in configs}
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        work = Path(tmp)
        sweep = work / "scaling.yaml"
        sweep.write_text(SWEEP.format(seeds=list(range(args.seeds)), n=args.n, epochs=args.epochs))
        cache = work / "cache"
        cache.mkdir()
        one(sweep, work, cache, ["--threads", "1"], args.mlflow)  # warm the split cache and the file cache
        print(f"before: {uptime()}")
        names = list(configs)
        for r in range(args.repeats):  # interleaved, the order rotated each repeat
            for name in names[r % len(names):] + names[:r % len(names)]:
                dt = one(sweep, work, cache, configs[name], args.mlflow)
                times[name].append(dt)
                print(f"  repeat {r + 1}: {name:26s} {dt:7.1f} s", flush=True)
        print(f"after:  {uptime()}")
    med = {k: statistics.median(v) for k, v in times.items()}
    runs = args.seeds
    print(f"\nsweep: {runs} runs of pgnn_con/no_gan (synthetic n={args.n}, {args.epochs} epochs), "
          f"{'with' if args.mlflow else 'without'} MLflow; median of {args.repeats} interleaved repeats")
    for k, v in med.items():
        print(f"  {k:26s} {v:7.1f} s")
    best_serial = min(med["serial (default threads)"], med["serial (1 thread)"])
    print(f"2 workers / best serial: {med['2 workers'] / best_serial:.2f}   (target <= 0.6)")
    print(f"2 workers / serial (1 thread): {med['2 workers'] / med['serial (1 thread)']:.2f}")
    print(f"2 workers / 1 worker: {med['2 workers'] / med['1 worker']:.2f}")
    overhead = (med["1 worker"] - med["serial (1 thread)"]) / runs
    print(f"dispatch overhead per run ((1 worker - serial 1 thread) / runs): {overhead:.2f} s   (target < 1 s)")


if __name__ == "__main__":
    main()
