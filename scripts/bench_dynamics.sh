#!/usr/bin/env bash
# One iteration of each of the eight dynamics, noiselab vs PyTorch CPU, side by side in
# one run: `cargo bench --bench protocol` (its `iteration:<key>` lines; LeNet, 1,200 real
# FashionMNIST images, f32, the released code's conventions, 30 iterations each from a
# partly trained θ, refreshes amortised) and scripts/bench_torch_dynamics.py (the same
# iterations in PyTorch), same machine and thread count. Prints the markdown table of
# docs/BENCHMARKS.md; the protocol bench's own lines (metrics, projection) go to stderr.
#   usage: scripts/bench_dynamics.sh [THREADS]
#   needs: python3 with torch, numpy and scipy (pip install torch numpy scipy);
#          PYTHON=/path/to/venv/bin/python picks another interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
python=${PYTHON:-python3}
"$python" -c 'import torch, scipy, numpy' 2>/dev/null || {
  echo "bench_dynamics: $python lacks torch/scipy/numpy (pip install torch numpy scipy)" >&2
  exit 2
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo bench --quiet --bench protocol --no-run >/dev/null 2>&1 || cargo bench --bench protocol --no-run
echo "running noiselab side ($threads threads)…" >&2
RAYON_NUM_THREADS=$threads cargo bench --quiet --bench protocol >"$work/noiselab.tsv"
grep -v '^iteration:' "$work/noiselab.tsv" >&2 || true
echo "running PyTorch side ($threads threads)…" >&2
"$python" scripts/bench_torch_dynamics.py --threads "$threads" >"$work/torch.tsv"
"$python" - "$work" "$threads" "$(git describe --always --dirty)" <<'PY'
import sys
work, threads, commit = sys.argv[1:]
def rows(f):
    out = {}
    for line in open(f"{work}/{f}"):
        if line.startswith("iteration:"):
            name, t, detail = line.rstrip("\n").split("\t")
            out[name.split(":", 1)[1]] = (float(t), detail)
    return out
ours, theirs = rows("noiselab.tsv"), rows("torch.tsv")
print(f"<!-- scripts/bench_dynamics.sh {threads}, commit {commit} -->")
print("| dynamics (one iteration, refreshes amortised) | noiselab | PyTorch | ratio | PyTorch detail |")
print("|---|---:|---:|---:|---|")
for key, (t, _) in ours.items():
    if key not in theirs:
        continue
    tt, detail = theirs[key]
    print(f"| {key} | {t * 1e3:.1f} ms | {tt * 1e3:.1f} ms | {t / tt:.2f} | {detail} |")
PY
