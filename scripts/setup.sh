#!/usr/bin/env bash
# Installs the Debian packages the build needs (only those missing), then
# configures and builds crfseg in ./build. Sourced by demo.sh and test.sh.
# Runs as root, or through sudo when it is available.
set -euo pipefail
cd "$(dirname "$0")/.."

# install_missing [--optional] PKG...: installs the packages that are not yet
# installed. With --optional a failure (no root, no network) only warns.
install_missing() {
  local optional=0
  if [ "${1:-}" = "--optional" ]; then optional=1; shift; fi
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "setup: installing ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "setup: need root (or sudo) to install ${missing[*]}" >&2
      ((optional)) && return 0
      exit 1
    fi
    sudo=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq || true
  if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    echo "setup: could not install ${missing[*]}" >&2
    ((optional)) && return 0
    exit 1
  fi
}

install_missing meson ninja-build g++ pkg-config doctest-dev libstb-dev
# MPI is optional: with it the build gains data-parallel training and the
# 2-rank test (tests/distributed/mpi_test.sh), which is skipped without it.
# Installed before `meson setup` so the first configure finds it.
install_missing --optional libopenmpi-dev openmpi-bin

# nvcc is optional: the CUDA backend builds when the toolkit is on PATH or in /usr/local/cuda.
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

if [ ! -f build/build.ninja ]; then
  meson setup build ${CRFSEG_MESON_ARGS:-}
fi
ninja -C build
