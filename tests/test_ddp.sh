#!/usr/bin/env bash
# Runs tests/test_ddp.c on 2 ranks of one machine (mpirun -np 2 --oversubscribe), as
# root too (Open MPI refuses root without OMPI_ALLOW_RUN_AS_ROOT); LeakSanitizer off,
# since MPI's own allocations outlive MPI_Finalize. Skips without MPI.
# usage: test_ddp.sh [TEST_DDP]
set -u
exe=${1:-}
if [ -z "$exe" ]; then echo "SKIP: qgrad was built without MPI (apt-get install libopenmpi-dev; meson -Dmpi=enabled)"; exit 77; fi
if ! command -v mpirun >/dev/null; then echo "SKIP: no mpirun (apt-get install openmpi-bin)"; exit 77; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 # the last setting wins
timeout 240 mpirun -np 2 --oversubscribe "$exe"
code=$?
if [ "$code" -eq 0 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed (exit $code)"; fi
exit "$code"
