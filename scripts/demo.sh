#!/usr/bin/env bash
# The main job: set up, build, and run the end-to-end demo.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
./build/tools/crfseg_demo "$@"
