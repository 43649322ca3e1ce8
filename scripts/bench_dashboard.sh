#!/usr/bin/env bash
# Dashboard overhead benchmark (not a test): the same toy run, alternately headless and
# with the dashboard attached in a real terminal (tmux), REPEATS times each. Reports the
# workers' compute time of every run (from events.log), the throughput ratio
# dashboard / headless, and the dashboard's frame count, draw time and UI-thread CPU.
#   usage: scripts/bench_dashboard.sh [SEEDS] [REPEATS]
#          scripts/bench_dashboard.sh fashion [REPEATS]   (a small FashionMNIST run from
#          the real subset in ../shared/data: progress events, the compare view's charts)
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${2:-5}
if [ "${1:-}" = fashion ]; then
  subset="$(cd .. && pwd)/shared/data/fashion-mnist-subset"
  args=(fashion_mnist --set fashion_mnist.train_samples=200 --set fashion_mnist.corrupted=20
        --set fashion_mnist.test_samples=200 --set fashion_mnist.gd_iterations=60
        --set fashion_mnist.gd_metrics_every=20 --set fashion_mnist.iterations=200
        --set fashion_mnist.metrics_every=20 --set fashion_mnist.sharpness_samples=50
        --set fashion_mnist.trace_probes=2 --set fashion_mnist.hessian_spectrum=6
        --set noise.gld_leading.k=4 --set noise.gld_hessian.k=4
        --set "fashion_mnist.data_dir=\"$subset\"")
  what="fashion_mnist (subset: 200 images, 60 GD + 200 iterations, 8 dynamics)"
else
  seeds=${1:-1000}
  args=(toy2d --set "toy2d.seeds=$seeds")
  what="toy2d, $seeds seeds × 6 dynamics × 500 iterations"
fi
cargo build --release --quiet
bin=target/release/noiselab
work=$(mktemp -d)
sock=noiselab-bench-$$
trap 'tmux -L "$sock" kill-server 2>/dev/null || true; rm -rf "$work"' EXIT
compute() { sed -n 's/.*workers done in \([0-9.]*\) s.*/\1/p' "$1/events.log"; }
echo "$what, $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')); $repeats runs each, interleaved"
for i in $(seq 1 "$repeats"); do
  "$bin" run "${args[@]}" --headless --out "$work/h$i" >/dev/null 2>&1
  tmux -L "$sock" new-session -d -x 150 -y 45 \
    "$bin run $(printf '%q ' "${args[@]}") --exit-when-done --ui-stats --out $work/d$i 2>$work/d$i.stats; echo done > $work/d$i.exit"
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
