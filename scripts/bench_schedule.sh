#!/usr/bin/env bash
# Wall time of the FashionMNIST protocol's phase 2 under different schedules: the same
# run (all eight dynamics from one θ_GD, a tenth of the iterations by default) with
# `trajectories_at_once` = each value given, one after the other on this machine, and
# the wall time each took (what `trajectories_at_once` is for: fewer trajectories side
# by side, the costliest first, may finish sooner than all at once on few cores).
# Records are compared: a schedule changes when a trajectory computes, never what.
#   usage: scripts/bench_schedule.sh THETA_GD_FILE [AT_ONCE...]   (default: 8 2)
#   env:   ITERATIONS (1500), METRICS_EVERY (500), KEEP=1 keeps the run directories,
#          BIN (target/release/noiselab)
# Prints one markdown row per schedule; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
theta=${1:?usage: scripts/bench_schedule.sh THETA_GD_FILE [AT_ONCE...]}
shift
[ -f "$theta" ] || { echo "bench_schedule: no θ_GD file at $theta" >&2; exit 2; }
schedules=("$@")
[ ${#schedules[@]} -gt 0 ] || schedules=(8 2)
iterations=${ITERATIONS:-1500}
every=${METRICS_EVERY:-500}
bin=${BIN:-target/release/noiselab}
[ -n "${BIN:-}" ] || cargo build --release --quiet
work=$(mktemp -d -p runs bench-schedule.XXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo "<!-- scripts/bench_schedule.sh, commit $(git describe --always --dirty), $cpu, $(nproc) cores, ${iterations} iterations from θ_GD, measured every ${every} -->"
echo "| trajectories at once | wall | processor | summary.json |"
echo "|---:|---:|---:|---|"
first=""
for n in "${schedules[@]}"; do
  out="$work/at-once-$n"
  echo "bench_schedule: trajectories_at_once=$n …" >&2
  /usr/bin/time -f '%e %U %S' -o "$work/time-$n" "$bin" run fashion_mnist -q --out "$out" \
    --set "fashion_mnist.theta_gd=\"$theta\"" \
    --set "fashion_mnist.iterations=$iterations" \
    --set "fashion_mnist.metrics_every=$every" \
    --set fashion_mnist.hessian_spectrum=0 \
    --set "trajectories_at_once=$n" >/dev/null
  read -r wall user sys <"$work/time-$n"
  same="reference"
  if [ -z "$first" ]; then
    first=$out
  elif cmp -s "$first/summary.json" "$out/summary.json"; then
    same="identical"
  else
    same="DIFFERS"
  fi
  awk -v n="$n" -v w="$wall" -v u="$user" -v s="$sys" -v same="$same" \
    'BEGIN { printf "| %s | %.0f s | %.0f s | %s |\n", n, w, u + s, same }'
done
