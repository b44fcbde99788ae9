"""Wall time of the same small sweep serially and on 1 and 2 Dask workers, interleaved.

The target is 2 workers <= 0.6 of serial wall time on 2 cores. "Serial" is printed
three ways: 1 Dask worker (one thread, the same code path), the plain runner with one thread, and
the plain runner with torch's default threads (2 here), which is what `bench run` does without
--workers. Each measurement is a fresh `bench run` process into a fresh results folder (the dataset split
cache is shared, as in real use), so start-up, cluster start, dispatch and record writing are
all counted. Sweeps of k and 2k runs separate the per-run dispatch overhead (the marginal cost
of a run on 1 worker over serial: target < 1 s) from the fixed cost of an invocation (cluster
start and stop, each worker process importing torch). Prints medians over the repeats, the
ratio of 2 workers to serial on the 2k sweep (target <= 0.6 on 2 cores), `uptime`, and the CPU
(model, torch capability, whether bf16 is native).

    python benchmarks/sweep_scaling.py [--runs 4] [--epochs 60] [--n 4000] [--repeats 2] [--mlflow]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from bench.hardware import cpu_summary  # noqa: E402

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
    ap.add_argument("--runs", type=int, default=4, help="k: the small sweep has k runs (seeds), the large 2k")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--n", type=int, default=4000, help="synthetic rows")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--mlflow", action="store_true", help="track to the embedded sqlite store too")
    args = ap.parse_args()
    k = args.runs
    configs = {  # name: (runs, extra CLI arguments); "serial" uses torch's default threads
        "serial, k runs": (k, []), "serial, 2k runs": (2 * k, []),
        "serial 1 thread, 2k": (2 * k, ["--threads", "1"]),
        "1 worker, k runs": (k, ["--workers", "1"]), "1 worker, 2k runs": (2 * k, ["--workers", "1"]),
        "2 workers, 2k runs": (2 * k, ["--workers", "2"]),
    }
    times: dict[str, list[float]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        work = Path(tmp)
        sweeps = {}
        for runs in (k, 2 * k):
            sweeps[runs] = work / f"scaling{runs}.yaml"
            sweeps[runs].write_text(SWEEP.format(seeds=list(range(runs)), n=args.n, epochs=args.epochs))
        cache = work / "cache"
        cache.mkdir()
        one(sweeps[k], work, cache, [], args.mlflow)  # warm the split cache and the OS file cache
        print(cpu_summary())
        print(f"before: {uptime()}")
        names = list(configs)
        for r in range(args.repeats):  # interleaved, the order rotated each repeat
            for name in names[r % len(names):] + names[:r % len(names)]:
                runs, extra = configs[name]
                dt = one(sweeps[runs], work, cache, extra, args.mlflow)
                times[name].append(dt)
                print(f"  repeat {r + 1}: {name:20s} {dt:7.1f} s", flush=True)
        print(f"after:  {uptime()}")
    med = {c: statistics.median(v) for c, v in times.items()}
    threads = os.environ.get("OMP_NUM_THREADS", "torch default")
    print(f"\nsweep: pgnn_con/no_gan on synthetic n={args.n}, {args.epochs} epochs, k={k}; "
          f"{'with' if args.mlflow else 'without'} MLflow; serial threads: {threads}; workers: 1 thread each; "
          f"median of {args.repeats} interleaved repeat(s)")
    for c, v in med.items():
        print(f"  {c:20s} {v:7.1f} s   ({', '.join(f'{x:.1f}' for x in times[c])})")
    extra_w1 = med["1 worker, 2k runs"] - med["1 worker, k runs"]
    per_run = (extra_w1 - (med["serial, 2k runs"] - med["serial, k runs"])) / k
    fixed = med["1 worker, k runs"] - med["serial, k runs"] - k * per_run
    two = med["2 workers, 2k runs"]
    print(f"2 workers / 1 worker (2k runs):                 {two / med['1 worker, 2k runs']:.2f}   (target <= 0.6)")
    print(f"2 workers / serial, 1 thread (2k runs):         {two / med['serial 1 thread, 2k']:.2f}")
    print(f"2 workers / serial, torch's threads (2k runs):  {two / med['serial, 2k runs']:.2f}")
    print(f"dispatch overhead per run (marginal, 1 worker vs serial): {per_run:.2f} s   (target < 1 s)")
    print(f"fixed overhead per invocation (cluster start/stop, worker imports): {fixed:.1f} s")


if __name__ == "__main__":
    main()
