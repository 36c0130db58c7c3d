#!/usr/bin/env bash
# Runs the PyTorch/torchvision parity tests: exports reference weights and
# outputs with tools/export_torchvision.py, then checks crfseg against them.
# Exits 77 (Meson's "skipped") with a message when python3-torch or
# python3-torchvision is not installed (Debian: apt-get install python3-torch
# python3-torchvision; scripts/test.sh installs them when it can).
set -euo pipefail
exe="$1"
root="$(cd "$(dirname "$0")/../.." && pwd)"
py=/usr/bin/python3
if ! "$py" -c 'import torch, torchvision' 2>/dev/null; then
  echo "SKIPPED: python3-torch/python3-torchvision not installed; torchvision parity not checked"
  exit 77
fi
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$py" "$root/tools/export_torchvision.py" parity --out "$dir"
CRFSEG_PARITY_DIR="$dir" "$exe"
