#!/usr/bin/env bash
# Where a U-Net training step's GPU time goes, kernel by kernel: Nsight
# Compute times every launch of bench_models' warm-up step, timed step and
# inference, and scripts/kernel_times.py sums the times by kernel (the table
# bench/NOTES.md change 27 made by hand). For a lent GPU machine, after
# scripts/gpu-check.sh:
#
#   scripts/gpu-kernels.sh [--prebuilt DIR] [bench_models arguments]
#
# The arguments default to issue #7's U-Net (base 64, 256^2, batch 16). The
# tables go to stdout and $OUT/gpu-kernels.md, the raw CSVs to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$out"
bin=build-gpu
if [ "${1:-}" = --prebuilt ]; then
  bin="${2:?gpu-kernels: --prebuilt needs a folder}"
  shift 2
fi
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
if [ ! -x "$ncu" ]; then
  echo "gpu-kernels: no ncu (Nsight Compute) on this machine" >&2
  exit 2
fi
args=("$@")
((${#args[@]})) || args=(--base 64 --depth 4 --size 256 --batch 16)
# --clock-control none: the GPU's own clocks, as the timed benchmarks run.
timeout 400 "$ncu" --csv --clock-control none --metrics gpu__time_duration.sum \
  "$bin/bench/bench_models" "${args[@]}" --repeats 1 --warmup 1 --device cuda >"$out/ncu-unet.csv" 2>&1
rc=$?
python3 scripts/kernel_times.py "$out/ncu-unet.csv" | tee "$out/gpu-kernels.md"
table_rc=${PIPESTATUS[0]}
# crfseg's own kernels again, the first 400 launches (the warm-up step),
# with the share of peak DRAM bandwidth and of peak SM throughput each ran
# at: whether im2col, col2im and batch norm are near the memory's limit or
# short of it (ncu replays each launch for these, so only these).
echo
echo "crfseg's kernels, first 400 launches, with throughput (% of peak):"
timeout 300 "$ncu" --csv --clock-control none --launch-count 400 \
  --kernel-name regex:'im2col|col2im|plane_kernel|grad_sums|for_each|max_pool|softmax|sgemm_tf32' \
  --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed \
  "$bin/bench/bench_models" "${args[@]}" --repeats 1 --warmup 1 --device cuda >"$out/ncu-unet-own.csv" 2>&1
own_rc=$?
python3 scripts/kernel_times.py "$out/ncu-unet-own.csv" | tee -a "$out/gpu-kernels.md"
own_table_rc=${PIPESTATUS[0]}
exit $((rc || table_rc || own_rc || own_table_rc))
