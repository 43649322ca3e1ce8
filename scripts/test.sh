#!/usr/bin/env bash
# The test suite: unit, oracle, statistical and CLI tests (optimised build), then a real
# toy run read back with h5py by scripts/check_run.py. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# h5py for the record check: pip where it works, Debian's packages where pip is
# locked by the system (PEP 668).
py=python3
if ! $py -c 'import h5py, numpy' 2>/dev/null; then
  if ! $py -m pip install --quiet h5py numpy 2>/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-h5py python3-numpy >/dev/null
    py=/usr/bin/python3
  fi
fi

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
rm -rf "$work"
