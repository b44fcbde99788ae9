#!/usr/bin/env bash
# The GPU check, prepared to run as ONE call on a lent GPU machine (about 6-8 minutes
# on one H200). What it runs, each step logged to $OUT/<step>.log:
#   env         nvidia-smi, torch and CUDA versions
#   tests       tests/test_cuda.py and the CUDA test of the metrics: no host synchronisation in a
#               training step (fp32, bf16, fp16), mixed precision close to fp32, every method
#               trained on the GPU through `bench run`, Dask workers on the GPU
#   mirflickr   benchmarks/train_throughput.py at MIRFlickr shapes, batch 100: release step vs
#               ours fp32 / bf16 / compiled, kernel counts, host reads, test mAP
#   nuswide     the same at NUS-WIDE shapes, batch 2048 (no mAP run)
#   metrics     benchmarks/metrics_speed.py on the GPU against cdist + a per-query loop
#
# Before the call, here (once; the GPU machine has torch, numpy, scipy, pandas, scikit-learn,
# click, pyyaml, tabulate and pytest, which is all `bench run --no-mlflow` and the benchmarks
# import, but not Dask, and it cannot download; without the wheels the Dask test is skipped):
#   bash benchmarks/gpu_check.sh --wheels        # writes .whl/ (ignored by git)
# The call (device tool): command "bash benchmarks/gpu_check.sh", carry [".whl"], timeout_s 600.
# On a machine without CUDA, BENCH_CHECK_DEVICE=cpu runs the same steps on small shapes (a dry
# run of the script itself).
set -u
if [ "${1:-}" = "--wheels" ]; then
  # bench's requirements that the GPU image lacks, for its Python 3.12 on x86-64
  set -e
  mkdir -p .whl
  # the Dask versions installed here; their other requirements are in the GPU image already
  versions=$(python3 -c "import dask, distributed; print(dask.__version__, distributed.__version__)")
  set -- $versions
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "dask==$1" "distributed==$2" tornado locket partd zict tblib
  echo "wheels in .whl: $(ls .whl | wc -l) files, $(du -sh .whl | cut -f1)"
  exit 0
fi

OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
DEV=${BENCH_CHECK_DEVICE:-cuda}
SITE=/tmp/bench-site
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    > "$OUT/install.log" 2>&1 || echo "wheel install failed: see install.log"
fi
export PYTHONPATH="$PWD${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log, one summary line
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name: rc $rc in $((SECONDS - t0)) s ($*)"
  tail -n "${TAIL:-30}" "$OUT/$name.log"
}

{ uptime; nvidia-smi 2>&1 | head -20; python3 -c "import torch, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"; python3 -c "from bench.hardware import cpu_summary; print(cpu_summary())"; } > "$OUT/env.log" 2>&1
cat "$OUT/env.log"

if [ "$DEV" = "cpu" ]; then  # dry run of the script on a machine without a GPU: small shapes
  SHAPE_ARGS=(--steps 2 --reps 1 --D 64)
  NUS_ARGS=(--batch 64)
  MAP_ARGS=(--map-n 300 --map-epochs 1)
  METRIC_ARGS=(--n 500)
else
  SHAPE_ARGS=(--steps 20 --reps 5)
  NUS_ARGS=()
  MAP_ARGS=(--map-n 4000 --map-epochs 5)
  METRIC_ARGS=(--n 8000)
fi

TAIL=15 step tests 240 python3 -m pytest -p no:cacheprovider -q -o addopts= -x tests/test_cuda.py \
  "tests/test_metrics.py::test_gpu_matches_naive" -rs
step mirflickr 200 python3 benchmarks/train_throughput.py --device "$DEV" --shape mirflickr \
  --variants release,fp32,bf16,compile "${SHAPE_ARGS[@]}" "${MAP_ARGS[@]}"
step nuswide 150 python3 benchmarks/train_throughput.py --device "$DEV" --shape nuswide \
  --variants release,fp32,bf16,compile "${SHAPE_ARGS[@]}" "${NUS_ARGS[@]}" --no-map
step metrics 90 python3 benchmarks/metrics_speed.py --device "$DEV" "${METRIC_ARGS[@]}"
echo "logs in $OUT"
