#!/usr/bin/env bash
# Runs every libFuzzer target of a build for SECONDS each, on a copy of its committed
# seed corpus (tests/fuzz/corpus/<target>/), so that a run never grows the repository's
# corpus. Prints executions and coverage per target; exits non-zero if any target
# found a crash, leak, UB, timeout or out-of-memory (its reproducer and log are kept
# in $FUZZ_ARTIFACTS, default a new folder under /tmp, printed).
# usage: tests/fuzz/run.sh TARGET_DIR SECONDS   (TARGET_DIR: BUILD/tests/fuzz)
set -uo pipefail
dir=${1:?usage: run.sh TARGET_DIR SECONDS}
secs=${2:?usage: run.sh TARGET_DIR SECONDS}
corpus_root="$(cd "$(dirname "$0")" && pwd)/corpus"
art=${FUZZ_ARTIFACTS:-$(mktemp -d /tmp/qgrad-fuzz-artifacts.XXXXXX)}
mkdir -p "$art"
work=$(mktemp -d /tmp/qgrad-fuzz-corpus.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

declare -A max_len=([idx]=4096 [dataset]=4096 [safetensors]=16384 [qat_checkpoint]=16384 [optim_state]=8192)
failed=0 ran=0
for t in idx dataset safetensors qat_checkpoint optim_state; do
  exe="$dir/fuzz_$t"
  if [ ! -x "$exe" ]; then
    echo "fuzz_$t: FAIL: no executable $exe"
    failed=$((failed + 1))
    continue
  fi
  mkdir -p "$work/$t"
  cp -r "$corpus_root/$t/." "$work/$t/"
  log="$art/fuzz_$t.log"
  "$exe" -max_len="${max_len[$t]}" -timeout=10 -rss_limit_mb=2048 -max_total_time="$secs" \
    -print_final_stats=1 -artifact_prefix="$art/fuzz_$t-" "$work/$t" >"$log" 2>&1
  rc=$?
  ran=$((ran + 1))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9/]*[a-zA-Z]*\).*/\1/p' <<<"$last")
  line="fuzz_$t: ${execs:-?} executions in ${secs} s, cov: ${cov:-?} ft: ${ft:-?} corp: ${corp:-?}"
  if [ "$rc" -eq 0 ] && ! grep -qE '^==[0-9]+==ERROR|runtime error:|^SUMMARY: ' "$log"; then
    echo "$line: ok"
  else
    echo "$line: FAIL (exit $rc), log $log"
    grep -E 'ERROR: |runtime error:|^SUMMARY: |Test unit written to|^    #[0-9]' "$log" | head -25 | sed 's/^/  /'
    failed=$((failed + 1))
  fi
done
echo "fuzz: $ran targets run, $failed failed; artifacts in $art"
[ "$failed" -eq 0 ]
