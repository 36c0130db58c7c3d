#!/usr/bin/env bash
# Runs tests/distributed/test_data_parallel on 2 MPI ranks over loopback:
#   mpi_test.sh PATH/TO/test_data_parallel
# (CRFSEG_DP_RANKS=N: N ranks instead; CRFSEG_DP_ONLY picks the checks, see
# the test's main.)
# Exit 77 (meson: skipped, never "passed") when mpirun or the build's MPI
# support is missing, with the reason on stdout.
set -uo pipefail
exe="$1"
if ! command -v mpirun >/dev/null; then
  echo "SKIP: mpirun not found (install openmpi-bin and libopenmpi-dev; scripts/setup.sh does)"
  exit 77
fi
# Open MPI refuses to run as root unless told; CI containers run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# One thread per rank, and ranks that wait yield the core (the machine may
# have fewer cores than ranks; --oversubscribe allows that).
export OMP_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1
# Loopback only: shared memory and TCP on lo, no InfiniBand probing.
exec mpirun -np "${CRFSEG_DP_RANKS:-2}" --oversubscribe --bind-to none --mca btl self,vader,tcp --mca btl_tcp_if_include lo \
  --mca btl_vader_single_copy_mechanism none "$exe"
