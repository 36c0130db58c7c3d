#!/usr/bin/env bash
# Set up, build, and run the whole test suite. The output ends with the test
# runner's summary; each suite's doctest totals are printed above it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# PyTorch and torchvision (Debian packages, about 240 MB) are used only by the
# parity tests, which are skipped with a message without them. Set
# CRFSEG_TEST_TORCH=0 to leave them out.
if [ "${CRFSEG_TEST_TORCH:-1}" != 0 ]; then
  install_missing --optional python3-torch python3-torchvision
fi
meson test -C build --print-errorlogs --verbose --num-processes 2 "$@"
