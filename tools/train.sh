#!/usr/bin/env bash
# Installs dependencies (Debian, as root), builds qgrad and trains the default QAT CNN
# on Fashion-MNIST. Extra arguments go to fmnist (see: build/examples/fmnist --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
if [ ! -f build/build.ninja ]; then
  echo "train.sh: configuring the build (meson setup build)"
  meson setup build >/dev/null
fi
echo "train.sh: building qgrad and the examples (ninja -C build; about a minute the first time)"
set +e
ninja -C build | grep -E --line-buffered '^\[[0-9]+/[0-9]+\] Linking|FAILED|error'
st=${PIPESTATUS[0]}
set -e
[ "$st" -eq 0 ] || { echo "train.sh: the build failed (run: ninja -C build)" >&2; exit 1; }
# with no arguments the main job: QAT training, then the int8 model (convert, its
# accuracy beside the fake-quant model's, saved as build/fmnist_int8.safetensors) and
# its ONNX and standalone C forms (build/fmnist_int8.onnx, build/fmnist_int8.h and .c)
[ "$#" -gt 0 ] || set -- --convert build/fmnist_int8.safetensors --export-onnx build/fmnist_int8.onnx --export-c build
echo "train.sh: training: build/examples/fmnist $*"
exec build/examples/fmnist "$@"
