#!/usr/bin/env bash
# fmnist's error paths: missing, truncated or corrupt data and checkpoint files give
# one clear error line and a non-zero exit (never a crash); a bad flag prints usage
# and exits 2. usage: test_fmnist_cli.sh path/to/fmnist
set -u
fmnist=${1:?usage: test_fmnist_cli.sh FMNIST}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

# expect NAME WANT_EXIT PATTERN -- command...
expect() {
  local name=$1 want=$2 pattern=$3
  shift 4
  "$@" >"$tmp/out" 2>"$tmp/err"
  local code=$?
  local lines
  lines=$(wc -l <"$tmp/err")
  if [ "$code" -eq "$want" ] && grep -q -- "$pattern" "$tmp/err" && { [ "$want" -eq 2 ] || [ "$lines" -eq 1 ]; }; then
    pass=$((pass + 1)); echo "ok $name: $(head -1 "$tmp/err")"
  else
    fail=$((fail + 1)); echo "FAIL $name: exit $code (want $want), $lines error lines:"; cat "$tmp/err"
  fi
}

# a small MNIST-style set in gzip and a copy with the images truncated
python_free_idx() { # dir, n: n 28x28 images and labels, plain files
  local d=$1 n=$2
  mkdir -p "$d"
  { printf '\x00\x00\x08\x03'; printf "\\x00\\x00\\x00\\x$(printf %02x "$n")"; printf '\x00\x00\x00\x1c\x00\x00\x00\x1c';
    head -c $((n * 784)) /dev/urandom; } >"$d/train-images-idx3-ubyte"
  { printf '\x00\x00\x08\x01'; printf "\\x00\\x00\\x00\\x$(printf %02x "$n")"; head -c "$n" /dev/zero; } >"$d/train-labels-idx1-ubyte"
  cp "$d/train-images-idx3-ubyte" "$d/t10k-images-idx3-ubyte"
  cp "$d/train-labels-idx1-ubyte" "$d/t10k-labels-idx1-ubyte"
}
python_free_idx "$tmp/good" 100
mkdir -p "$tmp/trunc" && cp "$tmp/good/"* "$tmp/trunc/"
head -c 5000 "$tmp/good/train-images-idx3-ubyte" >"$tmp/trunc/train-images-idx3-ubyte"
mkdir -p "$tmp/corrupt" && cp "$tmp/good/"* "$tmp/corrupt/"
gzip -c "$tmp/good/train-images-idx3-ubyte" | head -c 3000 >"$tmp/corrupt/train-images-idx3-ubyte.gz"
mkdir -p "$tmp/mismatch" && cp "$tmp/good/"* "$tmp/mismatch/"
{ printf '\x00\x00\x08\x01\x00\x00\x00\x05'; head -c 5 /dev/zero; } >"$tmp/mismatch/train-labels-idx1-ubyte"

expect "missing data" 1 "cannot open" -- "$fmnist" --data "$tmp/none" --steps 1
expect "truncated images" 1 "truncated" -- "$fmnist" --data "$tmp/trunc" --steps 1
expect "corrupt gzip" 1 "train-images-idx3-ubyte.gz" -- "$fmnist" --data "$tmp/corrupt" --steps 1
expect "labels do not match" 1 "labels" -- "$fmnist" --data "$tmp/mismatch" --steps 1
expect "missing checkpoint" 1 "ckpt" -- "$fmnist" --data "$tmp/good" --load "$tmp/none.ckpt" --eval-only
head -c 100 /dev/urandom >"$tmp/junk.ckpt"
expect "corrupt checkpoint" 1 "junk.ckpt" -- "$fmnist" --data "$tmp/good" --load "$tmp/junk.ckpt" --eval-only
"$fmnist" --data "$tmp/good" --model mlp --float --steps 1 --save "$tmp/mlp.safetensors" >/dev/null 2>&1
expect "checkpoint of another model" 1 "missing keys" -- "$fmnist" --data "$tmp/good" --model cnn --load "$tmp/mlp.safetensors" --eval-only
head -c 2000 "$tmp/mlp.safetensors" >"$tmp/short.safetensors"
expect "truncated checkpoint" 1 "short.safetensors" -- "$fmnist" --data "$tmp/good" --model mlp --load "$tmp/short.safetensors" --eval-only
expect "bad flag" 2 "usage" -- "$fmnist" --frobnicate
expect "bad value" 2 "usage" -- "$fmnist" --epochs zero
expect "bad model" 2 "usage" -- "$fmnist" --model resnet
expect "bad qconfig" 2 "unknown qconfig" -- "$fmnist" --qconfig int3
expect "eval-only without load" 2 "needs --load" -- "$fmnist" --eval-only
# what a user reads: the header counts the epochs --steps leaves, --save says what it
# wrote, accuracies are percentages
"$fmnist" --data "$tmp/good" --model mlp --steps 2 --batch 10 --save "$tmp/saved.safetensors" >"$tmp/out" 2>&1
check_out() { # name pattern
  if grep -q -- "$2" "$tmp/out"; then pass=$((pass + 1)); echo "ok $1"; else fail=$((fail + 1)); echo "FAIL $1:"; cat "$tmp/out"; fi
}
check_out "header with --steps" "1 epoch (2 steps, --steps)"
check_out "--save reports" "saved $tmp/saved.safetensors: the prepared QAT model's state dict, [0-9]* tensors"
check_out "accuracy in percent" "test accuracy [0-9.]*% (fake-quant model)"
check_out "final accuracy in percent" "^test_acc=[0-9.]*% "
# --convert: the int8 model's accuracy beside the fake-quant one, saved; --int8 reloads
# it in a run that builds no float model and gets the same accuracy
for m in mlp cnn; do
  "$fmnist" --data "$tmp/good" --model $m --steps 3 --batch 10 --convert "$tmp/$m.int8" >"$tmp/out" 2>&1
  check_out "--convert reports ($m)" "^int8 (onednn): test loss [0-9.]*, test accuracy [0-9.]*%; fake-quant: .*saved $tmp/$m.int8"
  want=$(sed -n 's/^int8_acc=\([0-9.]*%\).*/\1/p' "$tmp/out")
  "$fmnist" --data "$tmp/good" --int8 "$tmp/$m.int8" --eval-only >"$tmp/out" 2>&1
  check_out "--int8 --eval-only gives the same accuracy ($m)" "test_acc=$want "
done
expect "--int8 without --eval-only" 2 "goes with --eval-only" -- "$fmnist" --int8 "$tmp/mlp.int8"
expect "--convert with --float" 2 "needs QAT" -- "$fmnist" --float --convert "$tmp/x"
expect "--sync-bn without --ddp" 1 "go with --ddp" -- "$fmnist" --sync-bn --steps 1
head -c 300 "$tmp/mlp.int8" >"$tmp/cut.int8"
expect "truncated int8 model" 1 "cut.int8" -- "$fmnist" --data "$tmp/good" --int8 "$tmp/cut.int8" --eval-only
expect "a QAT checkpoint as int8 model" 1 "not a qgrad int8 model" -- "$fmnist" --data "$tmp/good" --int8 "$tmp/saved.safetensors" --eval-only
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
