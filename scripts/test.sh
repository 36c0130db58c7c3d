#!/usr/bin/env bash
# Set up, build, and run the whole test suite. The output ends with the test
# runner's summary; each suite's doctest totals are printed above it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
meson test -C build --print-errorlogs --verbose --num-processes 2 "$@"
