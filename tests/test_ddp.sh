#!/usr/bin/env bash
# Runs tests/test_ddp.c on 2 ranks of one machine (mpirun -np 2 --oversubscribe), as
# root too (Open MPI refuses root without OMPI_ALLOW_RUN_AS_ROOT); LeakSanitizer off,
# since MPI's own allocations outlive MPI_Finalize. Then `fmnist --ddp` on 2 ranks: each
# says its rank, rank 0 alone reports the accuracy; a batch that does not divide among
# the ranks stops both at once with one message, and so do a bad data path and a NaN
# loss on one rank, each rank naming the failing one. Skips without MPI.
# usage: test_ddp.sh [TEST_DDP FMNIST]
set -u
exe=${1:-} fmnist=${2:-}
if [ -z "$exe" ]; then echo "SKIP: qgrad was built without MPI (apt-get install libopenmpi-dev; meson -Dmpi=enabled)"; exit 77; fi
if ! command -v mpirun >/dev/null; then echo "SKIP: no mpirun (apt-get install openmpi-bin)"; exit 77; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 # the last setting wins
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; cat "$tmp/out"; }

if timeout 240 mpirun -np 2 --oversubscribe "$exe" >"$tmp/out" 2>&1; then ok "test_ddp: $(tail -1 "$tmp/out")"
else bad "test_ddp"; fi

data=/usr/share/datasets/fashion-mnist
if [ -n "$fmnist" ] && [ -d "$data" ]; then
  timeout 240 mpirun -np 2 --oversubscribe "$fmnist" --ddp --threads 1 --steps 30 --model mlp --batch 64 >"$tmp/out" 2>&1
  code=$?
  if [ "$code" -eq 0 ] && grep -q "^fmnist: rank 0 of 2" "$tmp/out" && grep -q "^fmnist: rank 1 of 2" "$tmp/out" &&
     [ "$(grep -c '^test_acc=' "$tmp/out")" -eq 1 ]; then ok "fmnist --ddp on 2 ranks: $(grep '^test_acc=' "$tmp/out")"
  else bad "fmnist --ddp on 2 ranks: exit $code"; fi
  timeout 60 mpirun -np 2 --oversubscribe "$fmnist" --ddp --threads 1 --steps 2 --batch 63 >"$tmp/out" 2>&1
  code=$?
  if [ "$code" -ne 0 ] && [ "$(grep -c 'does not divide among 2 ranks' "$tmp/out")" -eq 1 ]; then
    ok "a batch that does not divide among the ranks: $(grep 'does not divide' "$tmp/out")"
  else bad "batch 63 on 2 ranks: exit $code"; fi
  # two runs with the same seed and rank count save the same bytes; every rank loads them
  for k in 1 2; do
    timeout 240 mpirun -np 2 --oversubscribe "$fmnist" --ddp --sync-bn --sync-observers --threads 1 --steps 20 \
      --model cnn --batch 64 --save "$tmp/ck$k.safetensors" >"$tmp/out" 2>&1 || bad "fmnist --ddp --save, run $k"
  done
  if [ -s "$tmp/ck1.safetensors" ] && cmp -s "$tmp/ck1.safetensors" "$tmp/ck2.safetensors"; then
    ok "two runs of fmnist --ddp --sync-bn --sync-observers save identical checkpoints ($(stat -c %s "$tmp/ck1.safetensors") bytes)"
  else bad "the checkpoints of two runs differ"; fi
  if timeout 240 mpirun -np 2 --oversubscribe "$fmnist" --ddp --threads 1 --steps 2 --model cnn --batch 64 \
       --load "$tmp/ck1.safetensors" >"$tmp/out" 2>&1 && grep -q '^test_acc=' "$tmp/out"; then
    ok "every rank loads rank 0's checkpoint: $(grep '^test_acc=' "$tmp/out")"
  else bad "fmnist --ddp --load"; fi
  # faults on one rank (Open MPI's MPMD form gives rank 1 its own flags): every rank
  # stops with a message naming rank 1, none waits (timeout: a hang fails)
  common=(--ddp --threads 1 --steps 30 --model mlp --batch 64)
  timeout 60 mpirun -np 1 --oversubscribe "$fmnist" "${common[@]}" : -np 1 --oversubscribe "$fmnist" "${common[@]}" \
    --data "$tmp/no-such-dir" >"$tmp/out" 2>&1
  code=$?
  if [ "$code" -ne 0 ] && [ "$code" -ne 124 ] && grep -q "no-such-dir" "$tmp/out" &&
     [ "$(grep -c '^fmnist: rank [01]: stopping: rank 1 failed to set up$' "$tmp/out")" -eq 2 ]; then
    ok "a bad data path on rank 1: both ranks stop: $(grep -m1 'stopping' "$tmp/out")"
  else bad "a bad data path on rank 1: exit $code"; fi
  timeout 60 mpirun -np 1 --oversubscribe "$fmnist" "${common[@]}" : -np 1 --oversubscribe "$fmnist" "${common[@]}" \
    --inject-nan 3 >"$tmp/out" 2>&1
  code=$?
  if [ "$code" -ne 0 ] && [ "$code" -ne 124 ] &&
     [ "$(grep -c '^fmnist: rank [01]: the loss diverged at step 3 on rank 1 ' "$tmp/out")" -eq 2 ]; then
    ok "a NaN loss on rank 1: both ranks stop: $(grep -m1 'diverged' "$tmp/out")"
  else bad "a NaN loss on rank 1: exit $code"; fi
else
  echo "skip fmnist --ddp: no fmnist or no $data"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
