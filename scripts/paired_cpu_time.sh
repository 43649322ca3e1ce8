#!/usr/bin/env bash
# Processor time per call of one profile_lenet workload, two builds alternating: for
# comparisons on a machine that is busy with something else (wall times would measure the
# neighbour). One thread; perf's task-clock of `WORKLOAD N` minus that of `WORKLOAD 0`
# (loading and set-up), over N.
#   scripts/paired_cpu_time.sh OLD_BINARY NEW_BINARY WORKLOAD N [ROUNDS]
#   (binaries: copies of target/release/examples/profile_lenet of two commits)
set -euo pipefail
old=$1 new=$2 workload=$3 n=$4 rounds=${5:-2}
export RAYON_NUM_THREADS=1
cd "$(dirname "$0")/.."
task_clock() { perf stat -x, -e task-clock "$1" "$workload" "$2" 2>&1 >/dev/null | grep task-clock | cut -d, -f1; }
for round in $(seq "$rounds"); do
  for which in old new; do
    bin=$old; [ "$which" = new ] && bin=$new
    t0=$(task_clock "$bin" 0)
    t1=$(task_clock "$bin" "$n")
    awk -v w="$workload" -v b="$which" -v r="$round" -v t0="$t0" -v t1="$t1" -v n="$n" \
      'BEGIN { printf "%s %s round %d: %.2f ms per call (CPU)\n", w, b, r, (t1 - t0) / n }'
  done
done
