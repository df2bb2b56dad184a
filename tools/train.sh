#!/usr/bin/env bash
# Installs dependencies (Debian, as root), builds qgrad and trains the default QAT CNN
# on Fashion-MNIST. Extra arguments go to fmnist (see: build/examples/fmnist --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
exec build/examples/fmnist "$@"
