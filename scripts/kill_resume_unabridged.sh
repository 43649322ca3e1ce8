#!/usr/bin/env bash
# The unabridged FashionMNIST preset killed with SIGKILL mid phase 2 and resumed: how
# much work the resume redoes. Waits until every dynamics has written its first phase-2
# checkpoint, lets the run go on for LATE seconds more, kills it, resumes it until every
# unfinished dynamics has checkpointed again, and prints the events.log lines that show
# where each dynamics was checkpointed, killed and continued.
#   bash scripts/kill_resume_unabridged.sh [OUT_DIR] [LATE_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/unabridged-kill}
late=${2:-90}
bin=target/release/noiselab
rm -rf "$out"
dynamics=(gd gld_const gld_dynamic gld_diag gld_leading gld_hessian gld_eig1 sgd)
first=$(( 3000 + $(grep -A3 '^\[record\]' configs/fashion_mnist.toml | sed -n 's/^checkpoint_every = //p') ))
checkpointed() { # every dynamics not yet finished has a checkpoint at or past $1 in events.log
  for d in "${dynamics[@]}"; do
    grep -q "\[$d\] finished" "$out/events.log" && continue
    grep -E "\[$d\] checkpoint: replicate 0, iteration [0-9]+" "$out/events.log" \
      | sed -E 's/.*iteration ([0-9]+).*/\1/' | awk -v m="$1" '$1 >= m {f=1} END {exit !f}' || return 1
  done
}
start=$(date +%s)
$bin run fashion_mnist --headless --out "$out" >/dev/null 2>"$out.run.log" &
pid=$!
until [ -f "$out/events.log" ] && checkpointed "$first"; do sleep 5; done
echo "every dynamics checkpointed at iteration >= $first after $(( $(date +%s) - start )) s; killing in $late s"
sleep "$late"
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
killed=$(date -u +%Y-%m-%dT%H:%M:%S)
echo "killed at $killed (UTC), $(( $(date +%s) - start )) s after the start"
cp "$out/events.log" "$out.before-resume.log"
resumed=$(date +%s)
$bin resume "$out" --headless >/dev/null 2>"$out.resume.log" &
pid=$!
next=$(( first + first - 3000 ))
until checkpointed "$next" || ! kill -0 "$pid" 2>/dev/null; do sleep 5; done
echo "resumed run checkpointed every unfinished dynamics at >= $next after $(( $(date +%s) - resumed )) s"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
echo "--- events.log: checkpoints, the kill and the continuation"
grep -E "checkpoint|continuing|resum|GD phase done|θ_GD read|Hessian at" "$out/events.log" | tail -60
