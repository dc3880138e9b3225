#!/usr/bin/env bash
# Short GPU benchmark in one command: configs/bench.py:gpu (batch 8, every case, jconv
# impls and auto; PyTorch is skipped off CPU). Run from anywhere on a machine with a GPU:
#
#     bash experiments/bench_gpu.sh [WORKDIR] [--config.KEY=VALUE ...]
#
# Writes WORKDIR (default runs/bench_gpu) with table.md, summary.csv, bench.png,
# environment.json and measurements.jsonl. Needs jax with CUDA; installs ml-collections
# (the only dependency a bare GPU image tends to lack) if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
WORKDIR="${1:-runs/bench_gpu}"
shift $(( $# > 0 ? 1 : 0 ))

if ! "$PYTHON" -c "import ml_collections" 2>/dev/null; then
  echo "bench_gpu.sh: ml_collections missing; pip install ml-collections" >&2
  "$PYTHON" -m pip install --quiet ml-collections || {
    echo "bench_gpu.sh: could not install ml-collections; install it and rerun" >&2; exit 1; }
fi
for module in jax flax tqdm matplotlib; do
  "$PYTHON" -c "import $module" 2>/dev/null || {
    echo "bench_gpu.sh: python module '$module' is missing; pip install $module" >&2; exit 1; }
done
backend=$("$PYTHON" -c "import jax; print(jax.default_backend())")
if [ "$backend" != "gpu" ]; then
  echo "bench_gpu.sh: jax.default_backend() is '$backend', not 'gpu'; no GPU visible" >&2
  exit 1
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m jconv run configs/bench.py:gpu --workdir "$WORKDIR" "$@"
