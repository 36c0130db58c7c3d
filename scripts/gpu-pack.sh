#!/usr/bin/env bash
# Builds the CUDA executables here, for a GPU machine that should not spend
# its short lease compiling, and copies them (stripped) into .gpu-bin/:
#
#   scripts/gpu-pack.sh [BUILD_DIR]     # default build-dev
#
# Carry .gpu-bin (it is gitignored) and there unpack .gpu-bin/bin.tar.xz
# and run scripts/gpu-check.sh --prebuilt on the folder. The executables link
# the library statically, so xz over them all is a fraction of their size
# (the device tool carries at most 64 MiB). The build is portable: -Dnative=false (the kernels still pick
# AVX-512 or AVX2 at run time, so the other machine's CPU may differ), CUDA
# for sm_90a, and no optional peers or MPI, whose libraries the GPU machine's
# image may lack. Its glibc must be at least this machine's.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-build-dev}"
opts=(--buildtype=release -Dcuda=enabled -Dgpu_arch=90a -Dnative=false -Dpeers=disabled -Dmpi=disabled)
# The options are applied to an existing build folder too: one configured
# for this CPU (-Dnative=true) or without CUDA must not be packed.
if [ -f "$dir/build.ninja" ]; then meson configure "$dir" "${opts[@]}"; else meson setup "$dir" "${opts[@]}"; fi
ninja -C "$dir"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/tests" "$stage/bench" "$stage/tools"
for f in "$dir"/tests/test_* "$dir"/bench/bench_* "$dir"/tools/crfseg; do
  [ -f "$f" ] && [ -x "$f" ] || continue
  sub=$(basename "$(dirname "$f")")
  strip -o "$stage/$sub/$(basename "$f")" "$f"
done
if ldd "$stage"/*/* | grep -E "openblas|dnnl|mpi|nccl"; then
  echo "gpu-pack: an executable links a library the GPU machine may lack (above)" >&2
  exit 1
fi
rm -rf .gpu-bin
mkdir -p .gpu-bin
tar -C "$stage" -cf - . | xz -T0 -6 >.gpu-bin/bin.tar.xz
du -sh "$stage" .gpu-bin/bin.tar.xz
# The device tool carries at most 64 MiB with the working tree.
if (($(stat -c %s .gpu-bin/bin.tar.xz) > 56 * 1024 * 1024)); then
  echo "gpu-pack: .gpu-bin/bin.tar.xz is over 56 MiB: too large to carry with the tree" >&2
  exit 1
fi
