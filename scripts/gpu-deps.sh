#!/usr/bin/env bash
# Copies the header-only build dependencies (doctest, stb) from this
# machine's Debian packages into .gpu-deps/include, for a GPU machine that
# cannot install packages (the device tool's image). Carry .gpu-deps with
# the call; scripts/gpu-check.sh puts it on CPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu-deps/include
cp -r /usr/include/doctest /usr/include/stb .gpu-deps/include/
du -sh .gpu-deps
