#!/usr/bin/env bash
# Runs the kernel benchmarks side by side with the peers (OpenBLAS, oneDNN)
# and writes one markdown report, bench/results/<host>.md.
#   scripts/bench.sh [--quick]
# OpenBLAS reads OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE and runs a slower
# kernel when they are set, so they are unset for this run only.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=()
[[ "${1:-}" == "--quick" ]] && quick=(--quick)
ninja -C build bench/bench_gemm bench/bench_conv bench/bench_models >/dev/null
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
mkdir -p bench/results
out="bench/results/$(hostname).md"
{
  echo "# crfseg kernel benchmarks, $(date -u +%Y-%m-%d)"
  echo
  echo "Command: \`scripts/bench.sh ${quick[*]:-}\` (OMP_NUM_THREADS=$OMP_NUM_THREADS). Medians after warm-up;"
  echo "every crfseg kernel is verified before it is timed. Ratios are the numbers to quote: this machine is shared."
  echo
  ./build/bench/bench_gemm "${quick[@]}"
  echo
  ./build/bench/bench_conv "${quick[@]}"
  echo
  ./build/bench/bench_models "${quick[@]}"
  if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    /usr/bin/python3 bench/peers/torch_segmenter.py "${quick[@]}"
  else
    echo "(PyTorch not installed: no peer row; apt-get install python3-torch)"
  fi
} | tee "$out"
echo "wrote $out" >&2
