#!/usr/bin/env bash
# Resident memory across a long run: starts fmnist for N steps (default 2000) and
# samples its VmRSS every half second; prints the RSS after warm-up (the first epoch and
# its evaluation, which sizes the tape arena once: step 1000 by default) and
# the largest later value. usage: tools/rss_check.sh BUILD_DIR [STEPS] [fmnist args...]
set -euo pipefail
build=${1:?usage: rss_check.sh BUILD_DIR [STEPS]}
steps=${2:-2000}
shift $(( $# >= 2 ? 2 : 1 ))
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$build/examples/fmnist" --steps "$steps" --epochs 100 --log "$log" "$@" >/dev/null &
pid=$!
warm="" peak=0 samples=0
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  step=$(($(wc -l <"$log") - 1))
  if [ -n "$rss" ] && [ "$step" -ge "${WARMUP_STEPS:-1000}" ]; then
    [ -z "$warm" ] && warm=$rss
    [ "$rss" -gt "$peak" ] && peak=$rss
    samples=$((samples + 1))
  fi
  sleep 0.5
done
wait "$pid"
echo "rss: after warm-up ${warm} kB, largest of ${samples} later samples ${peak} kB, growth $((peak - warm)) kB over $steps steps"
