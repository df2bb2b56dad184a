#!/usr/bin/env bash
# examples/custom_model end to end: a custom module type trained with QAT and converted
# to int8 by its own convert hook. The int8 model's test accuracy must be printed, above
# 0.6 and within 0.03 of the fake-quant model's. Needs Fashion-MNIST (skipped without).
# usage: test_custom_model.sh path/to/custom_model
set -u
exe=${1:?usage: test_custom_model.sh CUSTOM_MODEL}
data=/usr/share/datasets/fashion-mnist
if [ ! -d "$data" ]; then echo "SKIP: $data is missing"; exit 77; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1:"; cat "$tmp/out"; }

"$exe" --steps 200 --data "$data" >"$tmp/out" 2>&1
code=$?
if [ "$code" -eq 0 ]; then ok "exit 0"; else bad "exit $code"; fi
if grep -q "block.quant_mid has a .*FakeQuantize" "$tmp/out"
then ok "prepare_qat puts fake-quant on the block's QuantStubs"; else bad "no fake-quant on block.quant_mid"; fi
if grep -q "^converted: block is QuantizedResidualBlock" "$tmp/out"; then ok "the hook built the int8 block"
else bad "block not converted by the hook"; fi
line=$(grep '^custom_model: int8 accuracy' "$tmp/out")
if [ -n "$line" ]; then ok "$line"; else bad "no int8 accuracy line"; fi
int8=$(echo "$line" | sed -n 's/.*int8 accuracy \([0-9.]*\) (fake-quant \([0-9.]*\)).*/\1/p')
fq=$(echo "$line" | sed -n 's/.*int8 accuracy \([0-9.]*\) (fake-quant \([0-9.]*\)).*/\2/p')
within() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; exit !(a > 0.6 && d <= 0.03 && d >= -0.03) }'; }
if [ -n "$int8" ] && [ -n "$fq" ] && within "$int8" "$fq"
then ok "int8 $int8 above 0.6 and within 0.03 of fake-quant $fq"; else bad "int8 accuracy '$int8' against fake-quant '$fq'"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
