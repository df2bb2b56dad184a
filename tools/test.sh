#!/usr/bin/env bash
# Installs dependencies, builds qgrad and runs every test three ways: gcc release,
# clang release, and gcc with AddressSanitizer + UndefinedBehaviorSanitizer.
# Ends with one line "N passed, N failed" summed over the three runs.
set -uo pipefail
cd "$(dirname "$0")/.."
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
}

run gcc -Dbench=true
CC=clang run clang -Dbench=false
run asan -Db_sanitize=address,undefined -Dbuildtype=debugoptimized -Db_lundef=false -Dbench=false

echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
