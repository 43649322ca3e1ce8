#!/usr/bin/env bash
# Dashboard overhead benchmark (not a test): the same toy run, alternately headless and
# with the dashboard attached in a real terminal (tmux), REPEATS times each. Reports the
# workers' compute time of every run (from events.log), the throughput ratio
# dashboard / headless, and the dashboard's frame count, draw time and UI-thread CPU.
#   usage: scripts/bench_dashboard.sh [SEEDS] [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-1000}
repeats=${2:-5}
cargo build --release --quiet
bin=target/release/noiselab
work=$(mktemp -d)
sock=noiselab-bench-$$
trap 'tmux -L "$sock" kill-server 2>/dev/null || true; rm -rf "$work"' EXIT
compute() { sed -n 's/.*workers done in \([0-9.]*\) s.*/\1/p' "$1/events.log"; }
echo "toy2d, $seeds seeds × 6 dynamics × 500 iterations, $(nproc) cores; $repeats runs each, interleaved"
for i in $(seq 1 "$repeats"); do
  "$bin" run toy2d --set "toy2d.seeds=$seeds" --headless --out "$work/h$i" >/dev/null 2>&1
  tmux -L "$sock" new-session -d -x 150 -y 45 \
    "$bin run toy2d --set toy2d.seeds=$seeds --exit-when-done --ui-stats --out $work/d$i 2>$work/d$i.stats; echo done > $work/d$i.exit"
  while [ ! -f "$work/d$i.exit" ]; do sleep 0.2; done
  tmux -L "$sock" kill-server 2>/dev/null || true
  printf '  run %d: headless %s s, dashboard %s s | %s\n' "$i" "$(compute "$work/h$i")" "$(compute "$work/d$i")" \
    "$(grep dashboard: "$work/d$i.stats" || echo 'no ui stats')"
done
python3 - "$work" "$repeats" <<'PY'
import re, statistics, sys
work, n = sys.argv[1], int(sys.argv[2])
t = lambda p: float(re.search(r"workers done in ([0-9.]+) s", open(f"{work}/{p}/events.log").read()).group(1))
h = [t(f"h{i}") for i in range(1, n + 1)]
d = [t(f"d{i}") for i in range(1, n + 1)]
print(f"median compute: headless {statistics.median(h):.3f} s, dashboard {statistics.median(d):.3f} s")
print(f"throughput ratio dashboard/headless (median times): {statistics.median(h) / statistics.median(d):.3f}")
PY
