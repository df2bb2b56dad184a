#!/usr/bin/env bash
# Installs what qgrad needs to build, test and train on Debian 12 (run as root), and
# the ONNX export's test tools: Python's onnx (Debian) and ONNX Runtime for Node
# (npm's onnxruntime-node, into ./node_modules). Skipped when everything is already
# there, so re-runs are quick.
set -euo pipefail
pkgs=(meson ninja-build pkg-config gcc clang libclang-rt-14-dev libsleef-dev libcjson-dev zlib1g-dev
      libopenblas-dev libomp-14-dev dataset-fashion-mnist
      libonnx-dev protobuf-c-compiler libprotobuf-c-dev python3-onnx libopenmpi-dev openmpi-bin)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "qgrad: missing packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
command -v node >/dev/null || pkgs_node=1
if [ "${pkgs_node:-0}" = 1 ] || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q --no-install-recommends nodejs npm; } || echo "qgrad: no Node.js: the ONNX Runtime tests will skip" >&2
  else
    echo "qgrad: no Node.js (apt-get install nodejs npm): the ONNX Runtime tests will skip" >&2
  fi
fi
# the CPU runtime is inside the package; its install script only fetches GPU parts
root=$(cd "$(dirname "$0")/.." && pwd)
if command -v npm >/dev/null && [ ! -d "$root/node_modules/onnxruntime-node" ]; then
  (cd "$root" && npm install --no-save --ignore-scripts --no-audit --no-fund onnxruntime-node >/dev/null) ||
    echo "qgrad: npm install onnxruntime-node failed: the ONNX Runtime tests will skip" >&2
fi
