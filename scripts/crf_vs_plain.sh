#!/usr/bin/env bash
# Does the CRF-RNN layer beat the plain U-Net on the synthetic noisy shapes?
# Trains each configuration below for the same steps from the same seeds
# (synth:600, 8 epochs, batch 8, lr 0.004, base width 4), evaluates the
# best checkpoint on the held-out test split, and prints one line per run:
# name, seed, test mean IoU, and test mean IoU within 3 px of a true label
# boundary (`crfseg eval --boundary-width`). About 30 s per run on 2 cores.
#
#   scripts/crf_vs_plain.sh [SEEDS...]        (default: 0 1 2)
#
# The configurations, on the default data (pixel noise sigma 0.06) with a
# depth-4 U-Net: plain; + CRF at the paper's thetas (160/3/3); + CRF with
# theta_beta 30, near two standard deviations of the pixel noise (15 on the
# 0-255 scale), so that same-class neighbours count as bilateral
# neighbours; and that with the network trained alone for the first 4
# epochs (--crf-warmup 4). Then noisier images (--synth-noise 0.15) and a
# shallower U-Net (depth 2, a small receptive field, so its own output is
# noisy): plain, and + CRF with theta_beta 60, at Zheng et al.'s initial
# kernel weights (3 I, 5 I) and at the default (I), trained with the
# network from the start or after 4 epochs of the network alone. Last,
# the same noisy images with sharp edges (--synth-blur 0), where the
# bilateral kernel sees the true boundary as a colour step, with depth-2
# and depth-4 U-Nets.
#
# CRF_VS_PLAIN_ONLY=GLOB runs only the configurations whose name matches
# GLOB (e.g. 'sharp-*'). scripts/crf_paired.py compares two configurations
# over the seeds in the lines this prints (paired difference, t, wins).
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=("${@:-0 1 2}")
out="${CRF_VS_PLAIN_OUT:-runs/crf_vs_plain}"
mkdir -p "$out"
common=(--data synth:600 --epochs 8 --batch 8 --lr 0.004 --base 4 --quiet)
crf=(--crf --crf-lr-mult 30)
crf_zheng=("${crf[@]}" --crf-weights 3,5)  # the initial weights of the README's first tables
sharp=(--synth-noise 0.15 --synth-blur 0)  # noisy images whose boundaries are colour steps
only="${CRF_VS_PLAIN_ONLY:-*}"
run() {
  local name=$1 seed=$2; shift 2
  # shellcheck disable=SC2053  # $only is a glob on purpose
  [[ $name == $only ]] || return 0
  ./build/tools/crfseg train "${common[@]}" --seed "$seed" --out "$out/$name-$seed" --overwrite "$@" \
    >"$out/$name-$seed.log" 2>&1
  ./build/tools/crfseg eval --checkpoint "$out/$name-$seed/best.safetensors" --split test --out "$out/$name-$seed" \
    >"$out/$name-$seed.eval.txt"
  echo "$name $seed $(awk -F'|' '/\*\*mean\*\*/ {gsub(/ /, "", $3); printf "%s ", $3}' "$out/$name-$seed.eval.txt")"
}
for seed in ${seeds[*]}; do
  run plain "$seed" --depth 4
  run crf-beta3 "$seed" --depth 4 "${crf_zheng[@]}"
  run crf-beta30 "$seed" --depth 4 "${crf_zheng[@]}" --crf-theta-beta 30
  run crf-beta30-warmup4 "$seed" --depth 4 "${crf_zheng[@]}" --crf-theta-beta 30 --crf-warmup 4
  run noisy-depth2-plain "$seed" --depth 2 --synth-noise 0.15
  run noisy-depth2-crf-beta60 "$seed" --depth 2 --synth-noise 0.15 "${crf_zheng[@]}" --crf-theta-beta 60
  run noisy-depth2-crf-beta60-w1 "$seed" --depth 2 --synth-noise 0.15 "${crf[@]}" --crf-theta-beta 60  # the default weights, I
  # The network alone for 4 epochs, then with the CRF (Zheng et al. fine-tuned their CRF-RNN after the FCN):
  run noisy-depth2-crf-beta60-w1-warmup4 "$seed" --depth 2 --synth-noise 0.15 "${crf[@]}" --crf-theta-beta 60 --crf-warmup 4
  # Sharp edges: the boundary is a colour step the bilateral kernel can find.
  run sharp-noisy-depth2-plain "$seed" --depth 2 "${sharp[@]}"
  run sharp-noisy-depth2-crf-beta60-w1 "$seed" --depth 2 "${sharp[@]}" "${crf[@]}" --crf-theta-beta 60
  run sharp-noisy-depth2-crf-beta60-w1-warmup4 "$seed" --depth 2 "${sharp[@]}" "${crf[@]}" --crf-theta-beta 60 --crf-warmup 4
  # And with a depth-4 U-Net, whose own boundaries are better.
  run sharp-noisy-depth4-plain "$seed" --depth 4 "${sharp[@]}"
  run sharp-noisy-depth4-crf-beta60-w1-warmup4 "$seed" --depth 4 "${sharp[@]}" "${crf[@]}" --crf-theta-beta 60 --crf-warmup 4
done
