#!/usr/bin/env bash
# A rank that fails ends the whole job: runs test_data_parallel's abort
# check (CRFSEG_DP_ONLY=abort: rank 1 throws mid-backward while rank 0
# waits for it in an all-reduce) on 2 ranks and passes when the job ends
# on its own, with a failure status and rank 1's message, well inside the
# time limit. A hang (rank 0 left waiting) is killed at 120 s and fails.
#   mpi_abort_test.sh PATH/TO/test_data_parallel
# Exit 77 (meson: skipped) when mpi_test.sh skips (no mpirun, no MPI build).
set -uo pipefail
here="$(dirname "$0")"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
CRFSEG_DP_ONLY=abort timeout 120 bash "$here/mpi_test.sh" "$1" >"$log" 2>&1
rc=$?
cat "$log"
if ((rc == 77)); then exit 77; fi
if ((rc == 124 || rc == 137)); then
  echo "FAIL: the job did not end within 120 s after rank 1 failed (rank 0 left waiting)"
  exit 1
fi
if ((rc == 0)); then
  echo "FAIL: the job exited 0 although rank 1 failed"
  exit 1
fi
if ! grep -q "rank 1 fails on purpose" "$log"; then
  echo "FAIL: exit status $rc, but not from rank 1's failure"
  exit 1
fi
if grep -q "FAIL: rank" "$log"; then
  echo "FAIL: a rank finished the step rank 1 abandoned"
  exit 1
fi
echo "PASS: rank 1's failure ended the job (exit status $rc)"
