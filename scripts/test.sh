#!/usr/bin/env bash
# The test suite: unit, oracle, statistical and CLI tests (optimised build), then a real
# toy run read back with h5py by scripts/check_run.py. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# h5py for the record check and matplotlib for the figures, installed by setup.sh for
# python3 (pip) or, where pip is locked by the system (PEP 668), for Debian's python3.
py=python3
$py -c 'import h5py, numpy, matplotlib' 2>/dev/null || py=/usr/bin/python3

# A one-node Slurm on this machine (root) for `sweep --slurm` (tests/slurm.rs): with
# NOISELAB_REQUIRE_SLURM set, a cluster that does not answer fails that test.
if [ "$(id -u)" -eq 0 ]; then bash scripts/slurm-cluster.sh start; else sudo bash scripts/slurm-cluster.sh start; fi
export NOISELAB_REQUIRE_SLURM=1

cargo test --release --all-targets

# The record, read back by h5py with nothing but docs/SCHEMA.md: a finished run, and a
# run killed with SIGKILL mid-way then repaired from its journal.
work=$(mktemp -d)
bin=target/release/noiselab
$bin run configs/toy2d.toml --set toy2d.seeds=50 --out "$work/finished" --quiet
$py scripts/check_run.py "$work/finished"
$bin run configs/toy2d.toml --set toy2d.seeds=100000 --out "$work/killed" --headless 2>/dev/null &
pid=$!
for _ in $(seq 100); do
  [ "$(stat -c %s "$work/killed/journal.bin" 2>/dev/null || echo 0)" -gt 2000000 ] && break
  sleep 0.1
done
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
$bin repair "$work/killed"
$py scripts/check_run.py "$work/killed"

# The paper's figures render from real runs of each experiment (small settings; the
# FashionMNIST one on the real subset in ../shared/data).
$bin run one_hidden --quiet --out "$work/one_hidden" --set 'one_hidden.widths=[8, 80]' \
  --set one_hidden.iterations=100 --set one_hidden.metrics_every=50 >/dev/null
$bin run fashion_mnist --quiet --out "$work/fashion" \
  --set "fashion_mnist.data_dir=\"$PWD/../shared/data/fashion-mnist-subset\"" \
  --set fashion_mnist.train_samples=100 --set fashion_mnist.corrupted=20 \
  --set fashion_mnist.test_samples=200 --set fashion_mnist.gd_iterations=20 \
  --set fashion_mnist.iterations=4 --set fashion_mnist.metrics_every=2 \
  --set fashion_mnist.sharpness_samples=8 --set fashion_mnist.trace_probes=2 \
  --set fashion_mnist.hessian_spectrum=20 \
  --set fashion_mnist.gd_metrics_every=10 \
  --set noise.gld_leading.k=4 --set noise.gld_hessian.k=4 >/dev/null
$bin run cifar10_vgg11 --quiet --out "$work/cifar10" \
  --data-dir "$PWD/../shared/data/cifar10-subset" \
  --set cifar10.train_samples=16 --set cifar10.test_samples=8 --set noise.batch_size=4 \
  --set cifar10.gd_iterations=2 --set cifar10.gd_metrics_every=1 \
  --set cifar10.iterations=2 --set cifar10.metrics_every=1 \
  --set cifar10.sharpness_samples=4 >/dev/null
$py scripts/plot_figures.py "$work/finished" "$work/one_hidden" "$work/fashion" "$work/cifar10" \
  -o "$work/figures"
# Figs. 1a/b/c, 2, 3a/b/c, 4a/b/c, 5 and 7a/b/c.
test "$(ls "$work/figures"/*.png | wc -l)" -eq 14
# A sweep's figures: mean ± 95 % CI over seeds (Fig. 1b from three toy seeds).
$bin sweep toy2d --seeds 0..2 --set toy2d.seeds=20 --out "$work/sweep" --local 2 >/dev/null
$py scripts/plot_figures.py "$work/sweep"
test -s "$work/sweep/figures/fig1b_success_rate.png"
rm -rf "$work"
