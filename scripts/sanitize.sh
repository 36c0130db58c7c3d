#!/usr/bin/env bash
# The sanitizer half of CI (run by .ci/run after scripts/test.sh):
#   1. build-san: clang with AddressSanitizer + UndefinedBehaviorSanitizer and
#      libFuzzer's coverage instrumentation; the whole test suite runs there,
#      any sanitizer report fails the test (halt_on_error);
#   2. each libFuzzer target briefly on the same build (scripts/fuzz.sh);
#   3. build-tsan: GCC with ThreadSanitizer; the data-loader suite (its worker
#      threads are the threaded code that is not OpenMP; libgomp is not
#      instrumented, so OpenMP runs single-threaded there).
#   scripts/sanitize.sh [FUZZ_SECONDS_PER_TARGET]     (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh  # install_missing (and an up-to-date build/)
install_missing clang libclang-rt-14-dev libomp-dev

echo "== ASan + UBSan: the whole test suite (build-san)"
# Line tables only (-gline-tables-only, -g1): the sanitizers' reports need
# file:line, not full debug info, and full -g made these two builds about 40%
# slower to compile. The TSan build runs only the loader tests, so -O1.
# -Wno-pass-failed: clang reports each `omp simd` loop it leaves scalar
# (hundreds, in the elementwise templates' integer and casting rows); a
# vectorisation hint not taken is no defect, and the lines buried the log.
if [ ! -f build-san/build.ninja ]; then
  CC=clang CXX=clang++ meson setup build-san -Dfuzz=true -Dtests=true -Dcuda=disabled -Dbench=false \
    -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized -Ddebug=false \
    "-Dcpp_args=['-gline-tables-only', '-Wno-pass-failed']"
fi
ninja -C build-san
# Sanitizer reports abort the test (tests/meson.build turns leak checks off
# for the MPI test only: OpenMPI keeps allocations until exit, in plugins).
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Fresh allocations (up to 1 MiB) are filled with 0xFF rather than ASan's
# default 0xBE, up to 4 KiB: reads of uninitialised memory then give large
# indices and NaNs that the checks catch (stb_image's uncleared JPEG state
# slipped past the default for three sessions of fuzzing).
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:max_malloc_fill_size=1048576:malloc_fill_byte=255
meson test -C build-san --print-errorlogs --num-processes 2

echo "== libFuzzer targets, ${1:-20} s each (build-san)"
FUZZ_BUILD=build-san ./scripts/fuzz.sh "${1:-20}"

echo "== ThreadSanitizer: the data loader (build-tsan)"
if [ ! -f build-tsan/build.ninja ]; then
  meson setup build-tsan -Db_sanitize=thread -Dcuda=disabled -Dbench=false -Dbuildtype=debugoptimized \
    -Doptimization=1 -Ddebug=false -Dcpp_args=-g1
fi
ninja -C build-tsan tests/test_datasets tests/test_tools
OMP_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 build-tsan/tests/test_datasets
OMP_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 build-tsan/tests/test_tools
echo "sanitize.sh: clean"
