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

run_dir=$(mktemp -d)/toy2d
cargo run --release --quiet -- run configs/toy2d.toml --set toy2d.seeds=50 --out "$run_dir" --quiet
$py scripts/check_run.py "$run_dir"
