#!/usr/bin/env bash
# Runs the test suite (every CUDA test included) and the GPU benchmarks in one
# command, for a lent GPU machine:
#
#   scripts/gpu-check.sh [--quick] [--prebuilt DIR] [--budget SECONDS]
#
#   --quick         the cuda and tensor suites only, short benchmarks
#   --prebuilt DIR  use executables built elsewhere (scripts/gpu-pack.sh puts
#                   them in .gpu-bin: carry it) instead of building here; the
#                   test executables are then run directly, not by meson
#                   (so without meson's crash, torchvision-parity and MPI
#                   tests, which need no GPU)
#   --budget S      skip the stages that would start after S seconds (the
#                   device lease is short; the stages run most-needed first)
#
# Without --prebuilt it builds build-gpu (release, sm_90a) first; that needs
# doctest's and stb's headers, which a machine without Debian's packages gets
# from .gpu-deps/ (scripts/gpu-deps.sh fills it here; carry it).
# Logs and result tables go to $OUT (the device tool's output folder) or
# ./gpu-check-out. The script ends with a summary table; the exit status is
# the tests'.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out="${OUT:-$root/gpu-check-out}"
mkdir -p "$out"
quick=0 prebuilt="" budget=100000
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --prebuilt) prebuilt="${2:?gpu-check: --prebuilt needs a folder}"; shift ;;
    --budget) budget="${2:?gpu-check: --budget needs seconds}"; shift ;;
    *) echo "gpu-check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
start=$SECONDS
summary=()
note() { summary+=("| $1 | $2 |"); }
# in_budget NAME: true while the budget has time left; else notes the skip.
in_budget() {
  if ((SECONDS - start < budget)); then return 0; fi
  note "$1" "skipped: over the ${budget} s budget"
  return 1
}
if [ -d .gpu-deps/include ]; then export CPATH="$root/.gpu-deps/include${CPATH:+:$CPATH}"; fi
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
jobs=$(nproc)

{
  echo "# gpu-check $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1
  nvcc --version 2>&1 | tail -2
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) x $jobs"
} | tee "$out/gpu-check-env.txt"

# 1. The executables: carried ones, or a build here.
if [ -n "$prebuilt" ]; then
  bin="$prebuilt"
  # A build from another machine finds cuBLAS wherever this one keeps it.
  if ldd "$bin/tests/test_cuda" | grep "not found" >/dev/null; then
    for lib in $(find /usr/local /opt /usr/lib -name 'libcublas.so.1*' 2>/dev/null | xargs -r -n1 dirname | sort -u); do
      export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    done
  fi
  # Exit 4: the prebuilt executables cannot run here (missing libraries, an
  # older glibc); the caller may build here instead.
  if ! "$bin/tests/test_cuda" --list-test-cases >/dev/null 2>&1; then
    echo "gpu-check: the prebuilt test_cuda does not start here:"
    "$bin/tests/test_cuda" --list-test-cases 2>&1 | head -5
    exit 4
  fi
  note build "prebuilt ($bin)"
else
  bin=build-gpu
  if [ ! -f build-gpu/build.ninja ]; then
    meson setup build-gpu -Dcuda=enabled -Dgpu_arch=90a -Dnative=true >"$out/gpu-check-setup.log" 2>&1 ||
      { tail -40 "$out/gpu-check-setup.log"; echo "gpu-check: meson setup failed"; exit 1; }
  fi
  if ! ninja -C build-gpu -j "$jobs" >"$out/gpu-check-build.log" 2>&1; then
    grep -E "error|FAILED" -A3 "$out/gpu-check-build.log" | head -60
    echo "gpu-check: build failed (full log: gpu-check-build.log)"
    exit 1
  fi
  note build "ok ($((SECONDS - start)) s)"
fi

# 2. Tests. CUDA_LAUNCH_BLOCKING is not set: launch_check reports errors at
# the next synchronisation; CRFSEG_CUDA_SYNC=1 reports them at the launch.
# The CUDA suite runs first, alone; then the CPU suites, side by side.
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
# The SGEMM cases first, alone and under a short limit: the wgmma kernels
# (v6, v7, v9, v10) wait on mbarriers, and a wrong phase or byte count hangs rather
# than fails. Should they hang, the rest of the suite still runs, and the
# GEMM benchmark leaves them out.
CRFSEG_CUDA_SYNC=1 timeout 120 "$bin/tests/test_cuda" -tc='*SGEMM*' >"$out/gpu-check-cuda-suite.log" 2>&1
gemm_rc=$?
note "test_cuda SGEMM cases" "rc $gemm_rc: $(grep -E 'test cases:' "$out/gpu-check-cuda-suite.log" | tr -s ' ')"
skip_gemm=()
bf16_kernels=(--bf16-kernels)  # the BF16 wgmma kernels alone, beside cuBLAS on the same operands
if ((gemm_rc == 124)); then
  note "test_cuda SGEMM cases" "TIMED OUT: the wgmma variants left out of the GEMM benchmark"
  skip_gemm=(--skip v6_tf32_wgmma,v7_tf32_wgmma_pair,v9_bf16_wgmma,v10_bf16_wgmma_pair)
  bf16_kernels=()
fi
echo "---- the other cases ----" >>"$out/gpu-check-cuda-suite.log"
CRFSEG_CUDA_SYNC=1 timeout 300 "$bin/tests/test_cuda" -tce='*SGEMM*' >>"$out/gpu-check-cuda-suite.log" 2>&1
cuda_rc=$?
cases=$(grep -E 'test cases:' "$out/gpu-check-cuda-suite.log" | tail -1 | tr -s ' ')
note test_cuda "rc $cuda_rc: $cases (the other cases)"
((gemm_rc)) && cuda_rc=1
# Without a device the suite skips its cases and passes: that is no GPU check.
if [ "$(sed -E 's/.*\| ([0-9]+) skipped.*/\1/' <<<"$cases")" -gt 5 ] 2>/dev/null; then
  note test_cuda "FAILED: most CUDA cases skipped (no device visible to crfseg)"
  cuda_rc=1
fi
if ((quick)); then suites=(tensor); else suites=(tensor kernels autograd layers models crf datasets distributed tools); fi
tests_rc=0
if [ -n "$prebuilt" ]; then
  pids=()
  for s in "${suites[@]}"; do
    CRFSEG_CUDA_SYNC=1 timeout 600 "$bin/tests/test_$s" >"$out/test_$s.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!suites[@]}"; do
    wait "${pids[$i]}"; rc=$?
    ((rc)) && tests_rc=1
    note "test_${suites[$i]}" "rc $rc: $(grep -E 'test cases:' "$out/test_${suites[$i]}.log" | tr -s ' ')"
  done
  # The per-suite logs travel as one file (the tool returns at most 8).
  tail -n 30 "$out"/test_*.log >"$out/gpu-check-tests.log" && rm -f "$out"/test_*.log
else
  # The CUDA suite ran above.
  if ((quick)); then meson_suites=(--suite tensor); else meson_suites=(--no-suite cuda); fi
  # (the data-parallel test's CUDA checks run below, with the benchmarks)
  CRFSEG_DP_ONLY=cpu CRFSEG_CUDA_SYNC=1 meson test -C build-gpu --print-errorlogs --num-processes 4 "${meson_suites[@]}" \
    >"$out/gpu-check-tests.log" 2>&1
  tests_rc=$?
  note "meson test" "$(grep -E '^(Ok|Fail|Skipped|Expected Fail|Timeout):' "$out/gpu-check-tests.log" | tr -s ' ' | paste -sd' ')"
fi

# 3. Benchmarks, most-needed first: hand-written SGEMMs beside cuBLAS; the
# U-Net training step beside PyTorch on the same GPU (fp32 with TF32 off on
# both sides, then bf16); the demo's training on the GPU; the conv paths
# beside cuDNN.
py=python3
bench_log="$out/gpu-check-bench.md"
: >"$bench_log"
bench() {  # bench NAME SECONDS CMD...: one timed-out benchmark command, logged
  local name=$1 limit=$2; shift 2
  in_budget "$name" || return 0
  echo "\$ $*" >>"$bench_log"
  local part rc
  part=$(mktemp)
  # (tee: the log keeps a benchmark's output as it comes, should the whole
  # run be stopped in the middle of it)
  timeout "$limit" "$@" 2>&1 | tee "$part" >>"$bench_log"
  rc=${PIPESTATUS[0]}
  echo >>"$bench_log"
  # A training step's median goes into the summary, so that the table
  # compares the configurations at a glance.
  local step
  step=$(grep -E '\| train step \|' "$part" | tail -1 | awk -F'|' '{gsub(/ /, "", $4); print $4}')
  rm -f "$part"
  note "$name" "rc $rc${step:+, train step $step ms (median)}"
}
export OMP_NUM_THREADS=$((jobs < 8 ? jobs : 8))
if ((quick)); then
  bench gemm 60 "$bin/bench/bench_gemm_cuda" --sizes 4096,1024,1000x1030x999 --repeats 10 --tf32 "${bf16_kernels[@]}" "${skip_gemm[@]}"
else
  bench gemm 120 "$bin/bench/bench_gemm_cuda" --tf32 "${bf16_kernels[@]}" "${skip_gemm[@]}"
fi
# B stored [N][K]: the TF32 wgmma variants without their packing pass (the
# BF16 ones round and pack either way, so they sit this one out).
bench "gemm tb" 60 "$bin/bench/bench_gemm_cuda" --sizes 4096,8192x8192x4096 --repeats 10 --tb "${skip_gemm[@]}" \
  --skip v9_bf16_wgmma,v10_bf16_wgmma_pair
# (--quick: issue #7's U-Net only, so the autotuned run below fits the budget.)
unet_sizes=("--base 64 --depth 4 --size 256 --batch 16")
((quick)) || unet_sizes+=("--base 16 --depth 4 --size 128 --batch 4")
for args in "${unet_sizes[@]}"; do
  # The first (issue #7's U-Net) also prints where its step's time goes, on
  # both sides: 3 more steps under each framework's profiler.
  profile=""
  [[ $args == "--base 64"* ]] && profile="--profile 3"
  # shellcheck disable=SC2086
  bench "unet $args" 150 "$bin/bench/bench_models" $args --repeats 10 --device cuda $profile
  # shellcheck disable=SC2086
  bench "torch unet $args" 150 $py bench/peers/torch_segmenter.py $args --repeats 10 --device cuda $profile
done
# The same step with every convolution pass autotuned (each layer's passes
# timed with im2col, implicit GEMM, Winograd F(2x2) and F(4x4), the fastest
# kept: its table compares the algorithms layer by layer; written without a
# GPU in session 45), then with Winograd F(2x2, 3x3) and F(4x4, 3x3) for
# every 3x3 layer (session 43; off by default).
for tile in auto winograd winograd4; do
  bench "unet $tile" 150 env CRFSEG_CUDA_CONV=$tile "$bin/bench/bench_models" --base 64 --depth 4 --size 256 \
    --batch 16 --repeats 10 --device cuda
done
# Mixed precision: bf16 tensor-core GEMM inputs (crfseg) beside torch.autocast(bfloat16).
bench "unet bf16" 120 "$bin/bench/bench_models" --base 64 --depth 4 --size 256 --batch 16 --repeats 10 --device cuda \
  --precision bf16
bench "torch unet bf16" 120 $py bench/peers/torch_segmenter.py --base 64 --depth 4 --size 256 --batch 16 --repeats 10 \
  --device cuda --amp bf16
# The same with every convolution on the implicit GEMM, whose float passes
# then run the BF16 tensor-core tile kernel (gemm/tiled_bf16.cuh; session
# 48, written without a GPU): no columns in memory at all.
bench "unet bf16 implicit" 120 env CRFSEG_CUDA_CONV=implicit "$bin/bench/bench_models" --base 64 --depth 4 --size 256 \
  --batch 16 --repeats 10 --device cuda --precision bf16
# ... and autotuned at bf16: per layer and pass, im2col + cuBLAS BF16
# against the tensor-core tiles and Winograd (whose batched products take
# BF16 inputs too).
bench "unet bf16 auto" 150 env CRFSEG_CUDA_CONV=auto "$bin/bench/bench_models" --base 64 --depth 4 --size 256 \
  --batch 16 --repeats 10 --device cuda --precision bf16
# The im2col path's stride-1 backward-input as the forward of the flipped
# filters (session 48, off by default: CRFSEG_CUDA_CONV_FLIP=1), at fp32
# (the decoder's layers, K = C / 2: half the columns) and bf16 (BF16
# columns): against "unet" and "unet bf16" above.
bench "unet flip" 150 env CRFSEG_CUDA_CONV_FLIP=1 "$bin/bench/bench_models" --base 64 --depth 4 --size 256 --batch 16 \
  --repeats 10 --device cuda
bench "unet bf16 flip" 120 env CRFSEG_CUDA_CONV_FLIP=1 "$bin/bench/bench_models" --base 64 --depth 4 --size 256 \
  --batch 16 --repeats 10 --device cuda --precision bf16
# With the layer's profile (its lattice and iteration scopes): session 42's
# H100 run had none when the layer took +401% of the step.
bench "unet+crf" 150 "$bin/bench/bench_models" --base 64 --depth 4 --size 256 --batch 16 --repeats 5 --device cuda --crf \
  --profile 2
# The host build one step ahead on a host thread (session 46, written
# without a GPU; what crfseg train does): the build overlaps the previous
# step, so its scope should shrink to the upload.
bench "unet+crf, lattices prefetched" 150 "$bin/bench/bench_models" --base 64 --depth 4 --size 256 --batch 16 \
  --repeats 5 --device cuda --crf --prefetch --profile 2
# The same with the batch's bilateral lattice built on the GPU (session 44,
# written without a GPU; off by default): its "CRF bilateral lattices" scope
# against the host build's above.
bench "crf lattice builds" 90 "$bin/bench/bench_crf" --gpu-builds
bench "unet+crf, lattice on device" 150 env CRFSEG_CUDA_LATTICE=device "$bin/bench/bench_models" --base 64 --depth 4 \
  --size 256 --batch 16 --repeats 5 --device cuda --crf --profile 2
# The demo (scripts/demo.sh's training) on the GPU: 8 epochs of U-Net + CRF-RNN.
bench "demo train on cuda" 180 "$bin/tools/crfseg" train --data synth:600 --epochs 8 --batch 8 --base 16 --depth 3 \
  --lr 0.004 --crf --crf-lr-mult 30 --seed 0 --out "$out/demo" --overwrite --device cuda
cp "$out/demo/metrics.csv" "$out/gpu-check-demo-metrics.csv" 2>/dev/null; rm -rf "$out/demo"
# Data parallel on the GPU: 2 MPI ranks sharing it (gradients staged through
# the host; NCCL needs a GPU per rank), against one process, CUDA checks only.
# Executables packed by gpu-pack.sh have no MPI: the test then skips (rc 77),
# and test_cuda's in-process data-parallel cases above are what ran.
if in_budget "data parallel (2 ranks, cuda)"; then
  CRFSEG_DP_ONLY=cuda timeout 300 bash tests/distributed/mpi_test.sh "$bin/tests/test_data_parallel" \
    >"$out/gpu-check-data-parallel.log" 2>&1
  dp_rc=$?
  # 77: skipped (no mpirun here): not a failure, and not a pass.
  ((dp_rc != 0 && dp_rc != 77)) && tests_rc=1
  note "data parallel (2 ranks, cuda)" "rc $dp_rc: $(grep -cE 'PASS' "$out/gpu-check-data-parallel.log") passed, $(grep -cE 'FAIL' "$out/gpu-check-data-parallel.log") failed, $(grep -m1 -E 'SKIP' "$out/gpu-check-data-parallel.log" | cut -c1-80)"
  # NCCL's start-up and all-reduces on one rank (two NCCL ranks need two GPUs).
  echo "---- NCCL, 1 rank ----" >>"$out/gpu-check-data-parallel.log"
  CRFSEG_DP_RANKS=1 CRFSEG_DP_ONLY=nccl timeout 120 bash tests/distributed/mpi_test.sh \
    "$bin/tests/test_data_parallel" >>"$out/gpu-check-data-parallel.log" 2>&1
  nccl_rc=$?
  ((nccl_rc != 0 && nccl_rc != 77)) && tests_rc=1
  note "NCCL (1 rank)" "rc $nccl_rc: $(sed -n '/NCCL, 1 rank ----/,$p' "$out/gpu-check-data-parallel.log" | grep -cE 'PASS') passed"
fi

bench conv 120 "$bin/bench/bench_conv_cuda" --repeats 5
bench "torch conv" 120 $py bench/peers/torch_conv_cuda.py --repeats 5
bench "conv bf16" 120 "$bin/bench/bench_conv_cuda" --repeats 5 --precision bf16
bench "torch conv bf16" 120 $py bench/peers/torch_conv_cuda.py --repeats 5 --precision bf16
# Where issue #7's U-Net step's GPU time goes, kernel by kernel (Nsight
# Compute): the table goes to the bench log, ncu's raw CSV stays off $OUT
# (the device tool returns at most 8 files).
if command -v ncu >/dev/null || [ -x /usr/local/cuda/bin/ncu ]; then
  bench "kernels (ncu)" 240 env OUT="$(mktemp -d)" scripts/gpu-kernels.sh --prebuilt "$bin"
fi

# 4. The memory checker over the CUDA suite, when the machine has one.
if command -v compute-sanitizer >/dev/null && in_budget memcheck; then
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 3 "$bin/tests/test_cuda" \
    >"$out/gpu-check-memcheck.log" 2>&1
  note "memcheck test_cuda" "rc $? $(grep -E 'ERROR SUMMARY' "$out/gpu-check-memcheck.log" | tail -1)"
fi

echo
# The CUDA suite's first failures, so that the command's tail shows them.
grep -E -m 30 "ERROR|FATAL|exception|what\(\)" "$out/gpu-check-cuda-suite.log"
echo
echo "| stage | result |"
echo "|---|---|"
printf '%s\n' "${summary[@]}"
echo "total $((SECONDS - start)) s"
exit $((tests_rc != 0 || cuda_rc != 0))
