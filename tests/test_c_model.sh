#!/usr/bin/env bash
# The README's path from training to a C model that runs without qgrad: fmnist trains a
# little, converts and exports (--convert ... --export-c DIR, and --int8 FILE
# --eval-only --export-c DIR), examples/run_c_model.c is compiled with the generated
# fmnist_int8.c (-std=c99 -pedantic -Werror) and run on the test images: its accuracy
# is the int8 model's, to the last digit. The test set is cut to its first 1,000 images
# (the generated code is plain scalar C). Skips without the dataset or a C compiler.
# usage: test_c_model.sh FMNIST SOURCE_ROOT
set -u
fmnist=${1:?usage: test_c_model.sh FMNIST SOURCE_ROOT}
root=${2:?usage: test_c_model.sh FMNIST SOURCE_ROOT}
data=/usr/share/datasets/fashion-mnist
cc=${QG_CC:-cc}
if [ ! -d "$data" ]; then echo "SKIP: $data is missing"; exit 77; fi
if ! $cc --version >/dev/null 2>&1; then echo "SKIP: no C compiler ($cc)"; exit 77; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -f "$tmp/out" ] && cat "$tmp/out"; }

# the training set as it is, the test set's first 1000 images (count 1000 = 0x3e8)
mkdir -p "$tmp/data"
ln -s "$data/train-images-idx3-ubyte.gz" "$data/train-labels-idx1-ubyte.gz" "$tmp/data/"
{ printf '\x00\x00\x08\x03\x00\x00\x03\xe8\x00\x00\x00\x1c\x00\x00\x00\x1c'
  zcat "$data/t10k-images-idx3-ubyte.gz" | tail -c +17 | head -c 784000; } >"$tmp/data/t10k-images-idx3-ubyte"
{ printf '\x00\x00\x08\x01\x00\x00\x03\xe8'; zcat "$data/t10k-labels-idx1-ubyte.gz" | tail -c +9 | head -c 1000; } \
  >"$tmp/data/t10k-labels-idx1-ubyte"

# compile run_c_model.c with DIR's model and compare its accuracy with the int8 model's
c_model() { # name dir want_accuracy
  local name=$1 d=$2 want=$3
  if $cc -std=c99 -Wall -Wextra -Werror -pedantic -O2 -I "$d" "$root/examples/run_c_model.c" "$d/fmnist_int8.c" \
      -o "$d/run_c_model" >"$tmp/out" 2>&1; then ok "$name: run_c_model.c and fmnist_int8.c compile (-std=c99 -pedantic)"
  else bad "$name: the C model does not compile"; return; fi
  "$d/run_c_model" "$tmp/data/t10k-images-idx3-ubyte" "$tmp/data/t10k-labels-idx1-ubyte" >"$tmp/out" 2>&1
  local got
  got=$(sed -n 's/^1000 images, accuracy \([0-9.]*\)%$/\1/p' "$tmp/out")
  if [ -n "$want" ] && [ "$got" = "$want" ]; then ok "$name: the C model's accuracy $got% is the int8 model's"
  else bad "$name: C model accuracy '$got', int8 model '$want'"; fi
}

mkdir -p "$tmp/cnn" "$tmp/mlp"
"$fmnist" --data "$tmp/data" --model cnn --steps 60 --convert "$tmp/cnn.safetensors" --export-c "$tmp/cnn" \
  --export-onnx "$tmp/cnn.onnx" >"$tmp/out" 2>&1
if grep -q "^exported $tmp/cnn/fmnist_int8.h and .c" "$tmp/out"; then ok "cnn: --convert --export-c"; else bad "cnn: export"; fi
if grep -q "built without ONNX" "$tmp/out"; then echo "skip --export-onnx: qgrad was built without ONNX"
elif grep -q "^exported $tmp/cnn.onnx: ONNX" "$tmp/out" && [ -s "$tmp/cnn.onnx" ]; then ok "cnn: --export-onnx"
else bad "cnn: --export-onnx"; fi
c_model cnn "$tmp/cnn" "$(sed -n 's/^int8_acc=\([0-9.]*\)% .*/\1/p' "$tmp/out")"

"$fmnist" --data "$tmp/data" --model mlp --steps 60 --convert "$tmp/mlp.safetensors" >/dev/null 2>&1
"$fmnist" --data "$tmp/data" --int8 "$tmp/mlp.safetensors" --eval-only --export-c "$tmp/mlp" >"$tmp/out" 2>&1
if grep -q "^exported $tmp/mlp/fmnist_int8.h and .c" "$tmp/out"; then ok "mlp: --int8 --eval-only --export-c"; else bad "mlp: export"; fi
c_model mlp "$tmp/mlp" "$(sed -n 's/^test_loss=[0-9.]* test_acc=\([0-9.]*\)% .*/\1/p' "$tmp/out")"

# errors: no int8 model to export; a folder that is not there (one line, exit 1, no file)
"$fmnist" --data "$tmp/data" --steps 1 --export-c "$tmp/cnn" >"$tmp/out" 2>&1
code=$?
if [ "$code" -eq 2 ] && grep -q "need an int8 model" "$tmp/out"; then ok "--export-c without an int8 model: usage"
else bad "--export-c without an int8 model: exit $code"; fi
"$fmnist" --data "$tmp/data" --int8 "$tmp/mlp.safetensors" --eval-only --export-c "$tmp/none" >"$tmp/out" 2>"$tmp/err"
code=$?
if [ "$code" -eq 1 ] && grep -q "$tmp/none" "$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ] && [ ! -e "$tmp/none" ]
then ok "--export-c to a missing folder: $(cat "$tmp/err")"; else bad "--export-c to a missing folder: exit $code"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
