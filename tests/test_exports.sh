#!/usr/bin/env bash
# libqgrad.so exports the public API and nothing else: every dynamic symbol it defines
# is a qg_ function of the public headers (no qg__ internals, no unprefixed helpers),
# and every function the headers declare with QG_API is there.
# usage: test_exports.sh path/to/libqgrad.so SOURCE_ROOT
set -u
lib=${1:?usage: test_exports.sh LIB SOURCE_ROOT}
root=${2:?usage: test_exports.sh LIB SOURCE_ROOT}
command -v nm >/dev/null || { echo "SKIP: nm not found"; exit 77; }
defined=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDRBVW]$/ {print $3}' | sort -u)
bad=$(echo "$defined" | grep -vE '^qg_[a-z0-9]' || true)
bad="$bad$(echo "$defined" | grep -E '^qg__' || true)"
declared=$(grep -hoE '^QG_API [^(]*[ *]qg_[a-z0-9_]+\(' "$root"/include/qgrad/*.h | sed -E 's/.*[ *](qg_[a-z0-9_]+)\($/\1/' | sort -u)
missing=$(comm -23 <(echo "$declared") <(echo "$defined"))
extra=$(comm -13 <(echo "$declared") <(echo "$defined") | grep -E '^qg_' || true)
pass=0 fail=0
if [ -z "$bad" ]; then pass=$((pass + 1)); echo "ok $(echo "$defined" | wc -l) exported symbols, all qg_ public names"
else fail=$((fail + 1)); echo "FAIL exported non-public symbols:"; echo "$bad" | sed 's/^/    /'; fi
if [ -z "$missing" ]; then pass=$((pass + 1)); echo "ok every QG_API function ($(echo "$declared" | wc -l)) is exported"
else fail=$((fail + 1)); echo "FAIL declared but not exported:"; echo "$missing" | sed 's/^/    /'; fi
if [ -z "$extra" ]; then pass=$((pass + 1)); echo "ok nothing exported that the headers do not declare"
else fail=$((fail + 1)); echo "FAIL exported but not declared with QG_API:"; echo "$extra" | sed 's/^/    /'; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
