#!/usr/bin/env bash
# Rewrites the committed seed corpora tests/fuzz/corpus/<target>/ with make_corpus
# (built by -Dfuzz=true). The seeds are deterministic: running it again changes
# nothing. usage: tests/fuzz/make_corpus.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: make_corpus.sh BUILD_DIR}
here="$(cd "$(dirname "$0")" && pwd)"
ninja -C "$build" tests/fuzz/make_corpus
rm -rf "$here/corpus"
"$build/tests/fuzz/make_corpus" "$here/corpus"
find "$here/corpus" -type f | sort | while read -r f; do printf '%6d %s\n' "$(stat -c %s "$f")" "${f#"$here"/}"; done
