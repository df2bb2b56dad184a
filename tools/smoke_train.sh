#!/usr/bin/env bash
# Smoke test of the main job: a few hundred QAT training steps on Fashion-MNIST from a
# build directory; passes when the loss fell (mean of the last 50 steps below 70% of
# the first 50) and the int8 model converted from it is saved and evaluated.
# usage: tools/smoke_train.sh BUILD_DIR [STEPS]
set -euo pipefail
build=${1:?usage: smoke_train.sh BUILD_DIR [STEPS]}
steps=${2:-300}
log=$(mktemp)
int8=$(mktemp --suffix=.safetensors)
trap 'rm -f "$log" "$int8"' EXIT
"$build/examples/fmnist" --steps "$steps" --epochs 1 --log "$log" --convert "$int8"
awk -F, -v steps="$steps" 'NR > 1 { loss[NR - 1] = $3; n = NR - 1 }
  END {
    if (n < 100) { print "smoke: only " n " steps logged"; exit 1 }
    for (i = 1; i <= 50; i++) first += loss[i];
    for (i = n - 49; i <= n; i++) last += loss[i];
    first /= 50; last /= 50;
    printf "smoke: mean loss of the first 50 steps %.4f, of the last 50 %.4f\n", first, last;
    if (last < 0.7 * first) { print "1 passed, 0 failed" } else { print "0 passed, 1 failed"; exit 1 }
  }' "$log"
