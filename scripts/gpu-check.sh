#!/usr/bin/env bash
# Builds crfseg with CUDA for sm_90, runs the test suite (every CUDA test
# included) and the GPU benchmarks, in one command, for a lent GPU machine:
#
#   scripts/gpu-check.sh [--quick]      # --quick: the cuda and tensor suites only, short benchmarks
#
# Logs and result tables go to $OUT (the device tool's output folder) or
# ./gpu-check-out. The build needs doctest's and stb's headers: a machine
# without Debian's packages (the device image) gets them from .gpu-deps/,
# which scripts/gpu-deps.sh fills here (carry it: it is gitignored). The
# script ends with a short summary table; the exit status is the tests'.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$out"
quick=0
[ "${1:-}" = "--quick" ] && quick=1
if [ -d .gpu-deps/include ]; then export CPATH="$PWD/.gpu-deps/include${CPATH:+:$CPATH}"; fi
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
jobs=$(nproc)

{
  echo "# gpu-check $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1
  nvcc --version | tail -2
} | tee "$out/gpu-check-env.txt"

# 1. Build (release, sm_90, no peers: they are CPU benchmarks' business).
if [ ! -f build-gpu/build.ninja ]; then
  meson setup build-gpu -Dcuda=enabled -Dgpu_arch=90 -Dnative=true >"$out/gpu-check-setup.log" 2>&1 ||
    { tail -40 "$out/gpu-check-setup.log"; echo "gpu-check: meson setup failed"; exit 1; }
fi
if ! ninja -C build-gpu -j "$jobs" >"$out/gpu-check-build.log" 2>&1; then
  grep -E "error|FAILED" -A3 "$out/gpu-check-build.log" | head -60
  echo "gpu-check: build failed (full log: gpu-check-build.log)"
  exit 1
fi

# 2. Tests. CUDA_LAUNCH_BLOCKING is not set: launch_check reports errors at
# the next synchronisation; CRFSEG_CUDA_SYNC=1 reports them at the launch.
export OMP_NUM_THREADS=$(( jobs < 8 ? jobs : 8 ))
if ((quick)); then suites=(--suite cuda --suite tensor); else suites=(); fi
CRFSEG_CUDA_SYNC=1 meson test -C build-gpu --print-errorlogs --num-processes 4 "${suites[@]}" \
  >"$out/gpu-check-tests.log" 2>&1
tests_rc=$?
# The CUDA suite's doctest summary (cases run, skipped, failed) for the table.
build-gpu/tests/test_cuda >"$out/gpu-check-cuda-suite.log" 2>&1
cuda_rc=$?

# 3. Benchmarks: hand-written SGEMMs beside cuBLAS; the two conv paths beside
# cuDNN; the U-Net training step beside PyTorch on the same GPU (fp32, TF32
# off on both sides).
{
  if ((quick)); then
    build-gpu/bench/bench_gemm_cuda --sizes 4096,1024 --repeats 10 --tf32
  else
    build-gpu/bench/bench_gemm_cuda --tf32
  fi
  echo
  build-gpu/bench/bench_conv_cuda --repeats 5
  python3 bench/peers/torch_conv_cuda.py --repeats 5 2>&1 | tail -8
  echo
  for args in "--base 64 --depth 4 --size 256 --batch 16" "--base 16 --depth 4 --size 128 --batch 4"; do
    # shellcheck disable=SC2086
    build-gpu/bench/bench_models $args --repeats 10 --device cuda
    # shellcheck disable=SC2086
    python3 bench/peers/torch_segmenter.py $args --repeats 10 --device cuda 2>&1 | tail -2
    echo
  done
  # Mixed precision: bf16 tensor-core GEMM inputs (crfseg) beside torch.autocast(bfloat16).
  build-gpu/bench/bench_models --base 64 --depth 4 --size 256 --batch 16 --repeats 10 --device cuda --precision bf16
  python3 bench/peers/torch_segmenter.py --base 64 --depth 4 --size 256 --batch 16 --repeats 10 --device cuda \
    --amp bf16 2>&1 | tail -2
} 2>&1 | tee "$out/gpu-check-bench.md"

echo
echo "| stage | result |"
echo "|---|---|"
echo "| build | ok |"
echo "| meson test ($([ $quick = 1 ] && echo 'cuda + tensor suites' || echo 'all suites')) | $(grep -E '^(Ok|Fail|Skipped|Expected Fail|Timeout):' "$out/gpu-check-tests.log" | tr -s ' ' | paste -sd' ') |"
echo "| test_cuda | $(grep -E 'test cases:' "$out/gpu-check-cuda-suite.log" | tr -s ' ') |"
exit $(( tests_rc != 0 || cuda_rc != 0 ))
