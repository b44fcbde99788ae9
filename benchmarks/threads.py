"""Serial `bench run` wall time with different thread settings, on a quiet machine and beside one
busy competing process, interleaved (A B C A B C ...) so that drifts of the machine hit every variant.

Variants (each a fresh `bench run` process of the same sweep into a fresh results folder):
  no option    whatever the installed `bench` chooses by itself
  1 thread     --threads 1
  N threads    --threads N, N = the CPUs this process may use (torch's own default on this machine)
  N passive    --threads N with OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep instead of
               spinning for a core that another process needs)
  N spin 10k   --threads N with GOMP_SPINCOUNT=10000 (GNU OpenMP spins that many times before it
  N spin 100k  sleeps; its default is 300,000 when no wait policy is set)
Conditions: quiet, and with one competing process that keeps one core busy (a Python loop).
Prints the median seconds per variant and condition, the ratio to 1 thread, `uptime`, the CPU.

    python benchmarks/threads.py [--repeats 3] [--sweep quick] [--method pgnn_con]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CORES = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
VARIANTS = {
    "no option": ([], {}),
    "1 thread": (["--threads", "1"], {}),
    "N threads": (["--threads", CORES], {}),
    "N passive": (["--threads", CORES], {"OMP_WAIT_POLICY": "PASSIVE"}),
    "N spin 10k": (["--threads", CORES], {"GOMP_SPINCOUNT": "10000"}),
    "N spin 100k": (["--threads", CORES], {"GOMP_SPINCOUNT": "100000"}),
}
# The competitor keeps one core busy and stops as soon as this script is gone (no orphan).
BUSY = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass\n"


def cpu() -> str:
    """CPU model and torch's CPU capability."""
    import torch

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} CPUs, torch {torch.__version__}, capability " \
           f"{torch.backends.cpu.get_cpu_capability()})"


def one(args: argparse.Namespace, work: Path, extra: list[str], env: dict[str, str]) -> float:
    """Seconds of one fresh `bench run` process."""
    results = Path(tempfile.mkdtemp(dir=work))
    cmd = [sys.executable, "-c", "from bench.cli import main; main()", "run", args.sweep, "--method", args.method,
           "seeds=[0]", "--no-mlflow", "--no-embeddings", "--results", str(results), *extra]
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT", "BENCH_THREADS")}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env={**clean, **env})
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    shutil.rmtree(results, ignore_errors=True)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sweep", default="quick")
    ap.add_argument("--method", default="pgnn_con")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS))
    ap.add_argument("--conditions", default="quiet,busy")
    args = ap.parse_args()
    names = [v.strip() for v in args.variants.split(",")]
    print(f"CPU: {cpu()}")
    print(f"before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    times: dict[tuple[str, str], list[float]] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    try:
        for condition in args.conditions.split(","):
            busy = subprocess.Popen([sys.executable, "-c", BUSY]) if condition == "busy" else None
            try:
                for _ in range(args.repeats):
                    for name in names:
                        extra, env = VARIANTS[name]
                        times.setdefault((condition, name), []).append(one(args, work, extra, env))
                        print(f"  {condition:5s} {name:9s} {times[(condition, name)][-1]:7.1f} s", flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print("\n| condition | variant | median s | runs (s) | / 1 thread |\n|---|---|---|---|---|")
    for (condition, name), values in times.items():
        base = statistics.median(times.get((condition, "1 thread"), values))
        med = statistics.median(values)
        print(f"| {condition} | {name} | {med:.1f} | {', '.join(f'{v:.1f}' for v in values)} | {med / base:.2f} |")


if __name__ == "__main__":
    main()
