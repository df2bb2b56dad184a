#!/usr/bin/env bash
# Every C example in README.md and in the public headers compiles warning-free
# (-std=c11 -Wall -Wextra -Werror) with each C compiler at hand: the code people copy
# first must be right. Examples are the ```c fenced blocks of README.md and the blocks
# fenced by " * ```c" ... " * ```" in include/qgrad/*.h. A block with a function
# definition, typedef or static object compiles at file scope; any other block is a
# run of statements, compiled inside a function that has x, labels, model and ps at
# hand (the names the examples use for a batch, its labels, a model and its parameters).
# usage: test_examples.sh SOURCE_ROOT
set -u
root=${1:?usage: test_examples.sh SOURCE_ROOT}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
compilers=()
for c in cc gcc clang; do command -v "$c" >/dev/null && compilers+=("$c"); done
if [ ${#compilers[@]} -eq 0 ]; then echo "SKIP: no C compiler"; exit 77; fi

# extract: file, fence-start regex, prefix to strip -> $tmp/ex_N.txt (first line: origin)
n=0
extract() {
  local file=$1 start=$2 prefix=$3
  awk -v start="$start" -v prefix="$prefix" -v out="$tmp/ex_" -v base="$n" -v name="${file#$root/}" '
    function strip(s) { sub(prefix, "", s); return s }
    !inb && $0 ~ start { inb = 1; k++; f = out (base + k) ".txt"; print name ":" NR > f; next }
    inb && strip($0) ~ /^[ ]*```[ ]*$/ { inb = 0; close(f); next }
    inb { print strip($0) > f }
    END { print k + 0 > (out "count") }' "$file"
  n=$((n + $(cat "$tmp/ex_count")))
}
extract "$root/README.md" '^```c[ ]*$' '^'
for h in "$root"/include/qgrad/*.h; do extract "$h" '^ \* ```c[ ]*$' '^ \*( |$)'; done
if [ "$n" -eq 0 ]; then echo "FAIL: no examples found"; exit 1; fi

passed=0 failed=0
for i in $(seq 1 "$n"); do
  f=$tmp/ex_$i.txt
  origin=$(head -1 "$f")
  src=$tmp/ex_$i.c
  {
    echo '#include <stdio.h>'
    echo '#include <qgrad.h>'
    grep -E '^#include' "$f" | grep -v 'qgrad.h'
    if tail -n +2 "$f" | grep -qE '^(typedef |static |[A-Za-z_][A-Za-z_0-9 *]*\(.*\) *\{$)'; then
      tail -n +2 "$f" | grep -vE '^#include'
    else
      echo 'qg_tensor *x, *labels; qg_module *model; qg_tensor_list *ps;'
      echo 'void example(void);'
      echo 'void example(void) {'
      tail -n +2 "$f" | grep -vE '^#include'
      echo '}'
    fi
  } > "$src"
  for c in "${compilers[@]}"; do
    if "$c" -std=c11 -Wall -Wextra -Werror -I"$root/include" -c "$src" -o "$tmp/ex.o" 2> "$tmp/err"; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
      echo "FAIL example at $origin with $c:"; sed 's/^/    /' "$tmp/err" | head -20
    fi
  done
done
echo "examples: $n blocks, compilers: ${compilers[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
