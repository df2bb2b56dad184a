#!/usr/bin/env bash
# The API torture tests call every public function: each function the headers declare
# with QG_API is named (as a whole word) in tests/test_hostile_api*.c or
# tests/test_hostile.c. A new public function without a hostile-argument test fails here.
# usage: test_hostile_coverage.sh SOURCE_ROOT
set -u
root=${1:?usage: test_hostile_coverage.sh SOURCE_ROOT}
declared=$(grep -hoE '^QG_API [^(]*[ *]qg_[a-z0-9_]+\(' "$root"/include/qgrad/*.h | sed -E 's/.*[ *](qg_[a-z0-9_]+)\($/\1/' | sort -u)
files=("$root"/tests/test_hostile_api*.c "$root"/tests/test_hostile.c)
[ -n "$declared" ] || { echo "FAIL no QG_API function found in $root/include/qgrad"; exit 1; }
# every identifier of the test files, once
used=$(cat "${files[@]}" | grep -oE '\bqg_[a-z0-9_]+\b' | sort -u)
missing=$(comm -23 <(echo "$declared") <(echo "$used"))
n=$(echo "$declared" | wc -l)
if [ -z "$missing" ]; then
    echo "ok all $n QG_API functions are called in ${files[*]##*/}"
    echo "1 passed, 0 failed"
    exit 0
fi
echo "FAIL $(echo "$missing" | wc -l) of $n QG_API functions are not called by the hostile tests:"
echo "$missing" | sed 's/^/    /'
echo "0 passed, 1 failed"
exit 1
