#!/usr/bin/env bash
# Installs the system packages noiselab builds against (Debian/Ubuntu), and h5py, numpy
# and matplotlib for python3 (scripts/check_run.py, scripts/plot_figures.py). Safe to
# re-run, and silent when everything is present: it only calls apt or pip when something
# is missing. Needs root or sudo for apt.
set -euo pipefail
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_install() {
  echo "setup: installing $*" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

packages=(pkg-config libhdf5-dev gcc tmux dataset-fashion-mnist)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

# Python: h5py, numpy and matplotlib for the python3 on PATH, by pip where pip works;
# where it does not (Debian's pip is locked by PEP 668, or there is no pip), Debian's
# packages for /usr/bin/python3. Which interpreter has them is re-derived the same way by
# whoever needs it (scripts/test.sh):
#   py=python3; $py -c 'import h5py, numpy, matplotlib' 2>/dev/null || py=/usr/bin/python3
py=python3
if ! $py -c 'import h5py, numpy, matplotlib' 2>/dev/null; then
  echo "setup: installing h5py numpy matplotlib for $py (pip)" >&2
  if ! $py -m pip install --quiet h5py numpy matplotlib >/dev/null 2>&1; then
    py=/usr/bin/python3
    $py -c 'import h5py, numpy, matplotlib' 2>/dev/null \
      || apt_install python3-h5py python3-numpy python3-matplotlib
  fi
  $py -c 'import h5py, numpy, matplotlib' \
    || { echo "setup: $py still cannot import h5py, numpy and matplotlib" >&2; exit 1; }
fi
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
