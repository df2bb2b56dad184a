#!/usr/bin/env bash
# `meson install` into a temporary staging directory, then a program built through
# pkg-config against it, as README.md's Build section says:
#  1. libqgrad.so.0 is installed and its SONAME is libqgrad.so.0; the headers of
#     include/ are installed unchanged;
#  2. bin/qgrad-fmnist is installed (and runs), bin/fmnist is not;
#  3. a program compiled with -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags --libs
#     qgrad) runs with no LD_LIBRARY_PATH, loads libqgrad.so.0 from the staging directory
#     (the rpath that qgrad.pc puts in Libs) and prints the expected values;
#  4. the same program links libqgrad.a with $(pkg-config --static --libs qgrad).
# Usage: test_install.sh BUILD_ROOT SOURCE_ROOT. From meson.build (tests/meson.build):
# QG_CC the build's C compiler (the static link must use the compiler and OpenMP
# runtime that compiled libqgrad.a), QG_PREFIX, QG_LIBDIR, QG_BINDIR. Exits 77 (meson's
# "skipped") without pkg-config or a compiler.
set -euo pipefail
build=$1
src=$2
read -ra ccmd <<<"${QG_CC:-cc}"
prefix=${QG_PREFIX:-/usr/local}
libdir=${QG_LIBDIR:-lib}
bindir=${QG_BINDIR:-bin}
case "$libdir" in /*) ;; *) libdir=$prefix/$libdir ;; esac
case "$bindir" in /*) ;; *) bindir=$prefix/$bindir ;; esac

for tool in pkg-config "${ccmd[0]}" meson python3 readelf ldd; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIP: $tool not found"
    exit 77
  fi
done

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qgrad-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
stage=$tmp/stage

# The prefix is fixed at setup time, so install under DESTDIR.
meson install -C "$build" --no-rebuild --quiet --destdir "$stage" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log" >&2; fail "meson install --destdir failed"; }

# 1. the shared library, its soname, the headers
lib=$stage$libdir
[ -e "$lib/libqgrad.so.0" ] || fail "$libdir/libqgrad.so.0 not installed"
[ -e "$lib/libqgrad.so" ] || fail "$libdir/libqgrad.so (the link-time name) not installed"
[ -e "$lib/libqgrad.a" ] || fail "$libdir/libqgrad.a not installed"
soname=$(readelf -d "$lib/libqgrad.so.0" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libqgrad.so.0 ] || fail "SONAME of libqgrad.so.0 is '$soname'"
ok "DESTDIR$libdir/libqgrad.so.0 -> $(readlink "$lib/libqgrad.so.0"), SONAME $soname"
for h in "$src"/include/qgrad.h "$src"/include/qgrad/*.h; do
  cmp -s "$h" "$stage$prefix/include/${h#"$src"/include/}" || fail "header ${h#"$src"/} not installed"
done
ok "headers installed"

# 2. the example program, under its installed name only
[ -x "$stage$bindir/qgrad-fmnist" ] || fail "$bindir/qgrad-fmnist not installed"
[ ! -e "$stage$bindir/fmnist" ] || fail "$bindir/fmnist installed (a generic name)"
"$stage$bindir/qgrad-fmnist" --help >/dev/null || fail "qgrad-fmnist --help failed"
ok "DESTDIR$bindir/qgrad-fmnist installed and runs, DESTDIR$bindir/fmnist not installed"

# 3. a program through pkg-config. qgrad.pc's paths are ${prefix}/..., so redefining
# prefix points them (and the rpath) into the staging directory; an install without
# DESTDIR needs only PKG_CONFIG_PATH.
pc() { PKG_CONFIG_PATH=$lib/pkgconfig pkg-config --define-variable=prefix="$stage$prefix" "$@" qgrad; }
pc --exists || fail "pkg-config does not find qgrad.pc in $libdir/pkgconfig"
[ "$(pc --variable=libdir)" = "$lib" ] || fail "qgrad.pc's libdir is not under \${prefix}"
ok "pkg-config: qgrad $(pc --modversion): $(pc --cflags --libs)"

cat >"$tmp/demo.c" <<'EOF'
#include <qgrad.h>
#include <stdio.h>

int main(void) {
    const float a[3] = {1.5f, 2.0f, -0.25f}, b[3] = {0.5f, 4.0f, 2.0f};
    qg_tensor *x = qg_tensor_from_data(QG_F32, 1, (int64_t[]){3}, a);
    qg_tensor *y = qg_tensor_from_data(QG_F32, 1, (int64_t[]){3}, b);
    qg_tensor *z = qg_tensor_zeros(QG_F32, 1, (int64_t[]){2});
    qg_tensor *dot = qg_sum(qg_mul(x, y), 0, NULL, false);
    if (!dot) {
        fprintf(stderr, "unexpected error: %s\n", qg_last_error());
        return 1;
    }
    printf("dot %g\n", qg_tensor_item(dot));
    qg_tensor *bad = qg_add(x, z); /* shapes [3] and [2] do not broadcast */
    int rc = bad == NULL && qg_last_status() == QG_ESHAPE && qg_last_error()[0] ? 0 : 1;
    printf("bad add: %s\n", bad ? "no error" : qg_last_error());
    qg_tape_reset(NULL);
    qg_tensor_free(x);
    qg_tensor_free(y);
    qg_tensor_free(z);
    return rc;
}
EOF
expected="dot 8.25"
# A sanitized libqgrad needs the sanitizer runtime in the program.
# (b_sanitize is a string, or a list in newer meson; "none" or [] when off)
sanitize=$(meson introspect "$build" --buildoptions | python3 -c '
import json, sys
v = next(o["value"] for o in json.load(sys.stdin) if o["name"] == "b_sanitize")
v = v if isinstance(v, list) else [] if v == "none" else v.split(",")
print(",".join(x for x in v if x != "none"))') || fail "reading b_sanitize"
san=()
[ -n "$sanitize" ] && san=(-fsanitize="$sanitize")
cflags=(-std=c11 -Wall -Wextra -Werror "${san[@]}")
echo "compiler: ${ccmd[*]} ${cflags[*]}"
check_run() { # program, how it was linked
  local out
  out=$(env -u LD_LIBRARY_PATH "$1") || fail "$2 program failed: $out"
  [ "$(head -1 <<<"$out")" = "$expected" ] || fail "$2 program printed '$out', expected '$expected'"
  grep -q '^bad add: .' <<<"$out" || fail "$2 program: no error message for a bad add: $out"
  ok "$2 program: $(tr '\n' '|' <<<"$out")"
}

# shellcheck disable=SC2046  # pkg-config output is a list of words
"${ccmd[@]}" "${cflags[@]}" "$tmp/demo.c" -o "$tmp/demo" $(pc --cflags --libs) ||
  fail "compiling through pkg-config --cflags --libs qgrad"
readelf -d "$tmp/demo" | grep -q 'NEEDED.*\[libqgrad\.so\.0\]' || fail "demo does not need libqgrad.so.0"
loaded=$(env -u LD_LIBRARY_PATH ldd "$tmp/demo" | awk '$1 == "libqgrad.so.0" {print $3}')
[ "$loaded" = "$lib/libqgrad.so.0" ] || fail "demo loads libqgrad.so.0 from '$loaded', not $lib"
ok "demo loads DESTDIR$libdir/libqgrad.so.0 through its rpath (DESTDIR=$stage)"
check_run "$tmp/demo" shared

# 4. static: -l:libqgrad.a instead of -lqgrad (libqgrad.so sits in the same directory),
# the rest as pkg-config --static gives it
libs=()
for w in $(pc --static --libs); do
  [ "$w" = -lqgrad ] && w=-l:libqgrad.a
  libs+=("$w")
done
# shellcheck disable=SC2046
"${ccmd[@]}" "${cflags[@]}" "$tmp/demo.c" -o "$tmp/demo-static" $(pc --cflags) "${libs[@]}" ||
  fail "linking libqgrad.a with pkg-config --static --libs qgrad: ${libs[*]}"
! readelf -d "$tmp/demo-static" | grep -q 'NEEDED.*libqgrad' || fail "demo-static needs libqgrad.so"
ok "static link: ${libs[*]}"
check_run "$tmp/demo-static" static
