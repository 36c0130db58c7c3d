#!/usr/bin/env bash
# Runs the kernel benchmarks side by side with the peers (OpenBLAS, oneDNN,
# PyTorch's CPU convolution and training step where python3-torch is installed)
# and writes one markdown report, bench/results/<host>.md.
#   scripts/bench.sh [--quick]
# OpenBLAS reads OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE and runs a slower
# kernel when they are set, so they are unset for this run only.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=()
[[ "${1:-}" == "--quick" ]] && quick=(--quick)
ninja -C build bench/bench_gemm bench/bench_conv bench/bench_models bench/bench_crf >/dev/null
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
  if [[ ${#quick[@]} -eq 0 ]]; then
    # The sizes issue #3 names: square, and the U-Net conv GEMM shapes.
    ./build/bench/bench_gemm --repeats 7 --variants v3_ukernel_avx2_6x16,v4_ukernel_avx512_12x32,v5_avx512_12x32_a_resident,openblas \
      2048 2048 2048 4096 4096 4096 64 65536 576 64 65536 27
    echo
  fi
  ./build/bench/bench_conv "${quick[@]}"
  echo
  if [[ ${#quick[@]} -eq 0 ]]; then
    # Issue #3's convolution targets are at batch 4, on the U-Net's layers.
    ./build/bench/bench_conv --batch 4 --filter unet --repeats 5
    echo
    if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
      /usr/bin/python3 bench/peers/torch_conv.py --batch 4 --repeats 5
      echo
    fi
  fi
  ./build/bench/bench_models "${quick[@]}"
  if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    /usr/bin/python3 bench/peers/torch_segmenter.py "${quick[@]}"
  else
    echo "(PyTorch not installed: no peer row; apt-get install python3-torch)"
  fi
  if [[ ${#quick[@]} -eq 0 ]]; then
    echo
    ./build/bench/bench_crf --headline
    echo
    ./build/bench/bench_crf --builds
  fi
} | tee "$out"
echo "wrote $out" >&2
