#!/usr/bin/env bash
# Issue #8's GPU measurements in one call (at most 6 minutes on one H100):
#   seed-cnn seconds per epoch, nnlab vs the report-style loop, same GPU, same call;
#   cnn-fast training seconds and final accuracy, mean ± std over 5 runs after a warm-up run;
#   if time allows, cnn-fast with train.compile and seed-cnn with CUDA graphs.
# Prints a Markdown table (card, date, versions included) and writes it to $OUT/gpu_bench.md
# when $OUT is set. Copy the figures into docs/performance.md.
#
# Usage, from the repository root (no network needed; torch, numpy, Pillow, matplotlib must be
# importable by python3; nnlab runs from source):
#   mkdir -p data && cp ../shared/datasets/cifar10-jpeg.tar.gz data/    # data/ is git-ignored
#   bash benchmarks/gpu.sh data/cifar10-jpeg.tar.gz [extra gpu_bench.py flags, e.g. --fast-runs 8]
# Check the script itself on a CPU (tiny sizes, meaningless numbers, a few minutes):
#   bash benchmarks/gpu.sh ../shared/datasets/cifar10-jpeg.tar.gz --smoke
set -euo pipefail

archive=${1:?usage: bash benchmarks/gpu.sh PATH/cifar10-jpeg.tar.gz [gpu_bench.py flags]}
shift
[ -f "$archive" ] || { echo "gpu.sh: $archive: no such file (copy cifar10-jpeg.tar.gz into data/ first)" >&2; exit 2; }
cd "$(dirname "$0")/.."

export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export NNLAB_DATA="${NNLAB_DATA:-$PWD/data/nnlab-cache}"   # the decoded uint8 cache, git-ignored
PYTHON=${PYTHON:-python3}

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
fi
# One process: one CUDA context and one cuDNN autotune cache for every stage.
# `timeout` keeps the whole call inside the 6 minutes even if a stage hangs.
exec timeout --signal=INT 350 "$PYTHON" benchmarks/gpu_bench.py --archive "$archive" "$@"
