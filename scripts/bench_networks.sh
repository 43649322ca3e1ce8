#!/usr/bin/env bash
# Side-by-side LeNet benchmark, noiselab (candle, CPU) vs PyTorch CPU, in one run: same
# machine, same thread count, same shapes, same θ, the same 1,200 real FashionMNIST
# images. Prints the markdown table of docs/BENCHMARKS.md.
#   usage: scripts/bench_networks.sh [THREADS]
#   needs: python3 with torch, numpy and scipy (pip install torch numpy scipy);
#          PYTHON=/path/to/venv/bin/python picks another interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
python=${PYTHON:-python3}
"$python" -c 'import torch, scipy, numpy' 2>/dev/null || {
  echo "bench_networks: $python lacks torch/scipy/numpy (pip install torch numpy scipy)" >&2
  exit 2
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo bench --quiet --bench networks --no-run >/dev/null 2>&1 || cargo bench --bench networks --no-run
echo "running noiselab side ($threads threads)…" >&2
RAYON_NUM_THREADS=$threads cargo bench --quiet --bench networks >"$work/noiselab.tsv"
echo "running PyTorch side ($threads threads)…" >&2
"$python" scripts/bench_torch.py --threads "$threads" >"$work/torch.tsv"
"$python" - "$work" "$threads" "$(git describe --always --dirty)" <<'PY'
import sys
work, threads, commit = sys.argv[1:]
def rows(f):
    out, head = {}, ""
    for line in open(f"{work}/{f}"):
        if line.startswith("#"):
            head = line[1:].strip()
            continue
        name, t, detail = line.rstrip("\n").split("\t")
        out[name] = (float(t), detail)
    return out, head
ours, h1 = rows("noiselab.tsv")
theirs, h2 = rows("torch.tsv")
labels = {
    "fwd_bwd_f32": "forward + backward, f32",
    "fwd_bwd_f64": "forward + backward, f64",
    "per_sample_f32": "per-sample gradient matrix 1,200 × 11,330, f32",
    "minibatch_60x20_f32": "60 × 20 minibatch gradient matrix, f32",
    "hvp_f32": "exact HVP, f32",
    "hvp_f64": "exact HVP, f64",
    "top20_eig_f32": "top-20 Hessian eigenpairs, f32",
    "top20_eig_f64": "top-20 Hessian eigenpairs, f64",
    "sharpness_m1000_f32": "expected sharpness, M = 1000, δ = 0.01, f32",
}
ms = lambda t: f"{t*1e3:.0f} ms" if t < 10 else f"{t:.1f} s"
print(f"commit {commit}; {threads} threads; {h1}; {h2}\n")
print("| work (LeNet, 1,200 real FashionMNIST images) | noiselab kernels | PyTorch | ratio | noiselab candle | kernels detail | PyTorch detail |")
print("|---|---:|---:|---:|---:|---|---|")
for key, label in labels.items():
    k, c, p = ours.get("kernels:" + key), ours.get("candle:" + key), theirs.get(key)
    if k and p:
        print(f"| {label} | {ms(k[0])} | {ms(p[0])} | {k[0]/p[0]:.2f} | {ms(c[0]) if c else '–'} | {k[1]} | {p[1]} |")
PY
