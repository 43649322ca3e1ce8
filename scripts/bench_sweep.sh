#!/usr/bin/env bash
# Throughput of a local sweep: N points of a small FashionMNIST protocol (the real subset
# in ../shared/data) run by `noiselab sweep --local J` against the same N runs one after
# another with every core each, in one session; prints both wall times and their ratio.
#   bash scripts/bench_sweep.sh [N] [J]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-4}
jobs=${2:-2}
bin=target/release/noiselab
cores=$(nproc)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sets=(--set "fashion_mnist.data_dir=\"$PWD/../shared/data/fashion-mnist-subset\""
  --set fashion_mnist.train_samples=200 --set fashion_mnist.corrupted=30
  --set fashion_mnist.test_samples=500 --set fashion_mnist.gd_iterations=100
  --set fashion_mnist.gd_metrics_every=50 --set fashion_mnist.iterations=100
  --set fashion_mnist.metrics_every=50 --set fashion_mnist.sharpness_samples=10
  --set fashion_mnist.curvature_metrics=false --set fashion_mnist.hessian_spectrum=0
  --set 'dynamics=["gd","gld_const","gld_diag","gld_leading","gld_eig1","sgd"]')
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $cores cores; $n points"
t0=$(date +%s.%N)
for s in $(seq 0 $((n - 1))); do
  $bin run fashion_mnist_quick "${sets[@]}" --set seed=$s --threads "$cores" \
    --out "$work/seq-$s" --quiet >/dev/null
done
t1=$(date +%s.%N)
$bin sweep fashion_mnist_quick --seeds 0..$((n - 1)) "${sets[@]}" --local "$jobs" \
  --out "$work/sweep" >/dev/null
t2=$(date +%s.%N)
python3 - "$t0" "$t1" "$t2" "$n" "$jobs" "$cores" <<'PY'
import sys
t0, t1, t2 = map(float, sys.argv[1:4]); n, j, c = sys.argv[4:]
seq, sw = t1 - t0, t2 - t1
print(f"one after another ({c} threads each): {seq:.1f} s")
print(f"sweep --local {j} ({max(1, int(c) // int(j))} threads each): {sw:.1f} s")
print(f"ratio sweep / one after another: {sw / seq:.3f}")
PY
