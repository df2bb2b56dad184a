#!/usr/bin/env bash
# Installs dependencies, builds qgrad and runs every test five ways: gcc portable (the
# default: baseline x86-64 with the hot kernels for AVX2 and AVX-512 chosen at run
# time), gcc native (-Dnative=true), clang portable, gcc generic x86-64 (-Dnative=false:
# no code may assume AVX2 or AVX-512 without checking), and gcc with AddressSanitizer +
# UndefinedBehaviorSanitizer. On a
# machine with AVX-512 it adds a sixth, AVX2-only build (-march=x86-64-v3), so the AVX2
# kernels (the only vector paths of an AVX2 machine) are tested there too; --no-avx2
# skips it, --avx2 forces it. Last, the libFuzzer targets of tests/fuzz/ (clang, ASan +
# UBSan) run FUZZ_SECONDS (default 60) each on their committed seed corpora, one pass
# or failure per target; --no-fuzz skips them. Ends with one line "N passed, N failed"
# over all runs.
set -uo pipefail
cd "$(dirname "$0")/.."
avx2=auto fuzz=yes
for a in "$@"; do
  case "$a" in
    --avx2) avx2=yes ;;
    --no-avx2) avx2=no ;;
    --no-fuzz) fuzz=no ;;
    *) echo "usage: $0 [--avx2|--no-avx2] [--no-fuzz]" >&2; exit 2 ;;
  esac
done
if [ "$avx2" = auto ]; then
  grep -q avx512f /proc/cpuinfo 2>/dev/null && avx2=yes || avx2=no
fi
bash tools/deps.sh || exit 1

passed=0
failed=0
run() { # name, meson setup args...
  local dir="build-test-$1"; shift
  echo "=== $dir: meson setup $*"
  if ! meson setup "$dir" --wipe "$@" >"$dir.setup.log" 2>&1 && ! meson setup "$dir" "$@" >"$dir.setup.log" 2>&1; then
    cat "$dir.setup.log"; failed=$((failed + 1)); return
  fi
  if ! ninja -C "$dir" >"$dir.build.log" 2>&1; then
    tail -50 "$dir.build.log"; failed=$((failed + 1)); return
  fi
  meson test -C "$dir" --print-errorlogs --num-processes 2 2>&1 | tee "$dir.test.log" | grep -E "^ *[0-9]+/[0-9]+ |^(Ok|Fail|Timeout):"
  local ok fail to
  ok=$(grep -E "^Ok:" "$dir.test.log" | awk '{print $2}')
  fail=$(grep -E "^Fail:" "$dir.test.log" | awk '{print $2}')
  to=$(grep -E "^Timeout:" "$dir.test.log" | awk '{print $2}')
  if [ -z "$ok" ]; then failed=$((failed + 1)); return; fi
  passed=$((passed + ok))
  failed=$((failed + ${fail:-0} + ${to:-0}))
  # each failing test's log, kept for the summary at the end (CI shows the output's tail)
  local t
  for t in $(grep -E "^ *[0-9]+/[0-9]+ +[A-Za-z0-9_]+ +(FAIL|TIMEOUT)" "$dir.test.log" | awk '{print $2}'); do
    awk -v t="$t" '/^=+ [0-9]+\/[0-9]+ =+$/ {keep = 0} $1 == "test:" && $2 == t {keep = 1} keep' \
      "$dir/meson-logs/testlog.txt" | tail -40 >"$dir.fail-$t.log"
    failures+=("$dir.fail-$t.log")
  done
}
failures=()

run gcc -Dbench=true
run native -Dnative=true -Dbench=false
CC=clang run clang -Dbench=false
run generic -Dnative=false -Dbench=false
[ "$avx2" = yes ] && run avx2 -Dnative=false -Dc_args=-march=x86-64-v3 -Dbench=false
run asan -Db_sanitize=address,undefined -Dbuildtype=debugoptimized -Db_lundef=false -Dbench=false

fuzz() {
  local dir=build-test-fuzz secs=${FUZZ_SECONDS:-60}
  echo "=== $dir: libFuzzer targets, $secs s each"
  if ! CC=clang meson setup "$dir" --wipe -Dfuzz=true -Db_sanitize=none -Dbench=false >"$dir.setup.log" 2>&1 &&
     ! CC=clang meson setup "$dir" -Dfuzz=true -Db_sanitize=none -Dbench=false >"$dir.setup.log" 2>&1; then
    cat "$dir.setup.log"; failed=$((failed + 1)); return
  fi
  local targets=(fuzz_idx fuzz_dataset fuzz_safetensors fuzz_qat_checkpoint fuzz_optim_state)
  if ! ninja -C "$dir" "${targets[@]/#/tests/fuzz/}" >"$dir.build.log" 2>&1; then
    tail -50 "$dir.build.log"; failed=$((failed + 1)); return
  fi
  bash tests/fuzz/run.sh "$dir/tests/fuzz" "$secs" 2>&1 | tee "$dir.run.log"
  local ok; ok=$(grep -cE '^fuzz_[a-z_]+: .*: ok$' "$dir.run.log")
  passed=$((passed + ok))
  failed=$((failed + ${#targets[@]} - ok))
}
[ "$fuzz" = yes ] && fuzz

for f in "${failures[@]}"; do
  echo "=== failed: ${f%.log} (the last 40 lines of its log)"
  cat "$f"
done
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
