#!/usr/bin/env bash
# The GPU check of the CUDA path, in one go on a machine with an NVIDIA GPU, PyTorch and
# no network or Rust: carry a binary built by scripts/build-cuda.sh and the real data
# subsets (../shared/data, or --fashion/--cifar), then
#   bash scripts/gpu-check.sh --bin path/to/noiselab --out "$OUT"
# 1. `noiselab device-check`: every operation of the network experiments on CUDA (f32)
#    against the CPU kernels in f64 at the same θ, with tolerances, and its median time;
# 2. scripts/bench_torch_gpu.py: the same operations in PyTorch on the same GPU, and the
#    ratio noiselab / PyTorch per operation (summary.md);
# 3. the quick FashionMNIST preset and the CIFAR-10 preset on the 4,000-image subset, end
#    to end on the GPU, each stopped cleanly (SIGINT: checkpoint, record) at its time limit
#    so its progress gives the projection; their records come back as records.tgz.
# It writes at most 7 files to --out (the device machine returns 8). It takes ≤ 8 minutes
# with the default limits. `--device candle-cpu` dry-runs the same script on a CPU-only
# machine, scaled down (tiny runs, PyTorch on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/noiselab
out=${OUT:-runs/gpu-check}
device=cuda
fashion=../shared/data/fashion-mnist-subset
cifar=../shared/data/cifar10-subset
fashion_limit=150   # seconds for the quick FashionMNIST preset (the goal: ≤ 60)
cifar_limit=180     # seconds for the CIFAR-10 preset on 4,000 images
python=${PYTHON:-python3}
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --fashion) fashion=$2; shift 2 ;;
    --cifar) cifar=$2; shift 2 ;;
    --fashion-limit) fashion_limit=$2; shift 2 ;;
    --cifar-limit) cifar_limit=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
say() { echo "[gpu-check $(date -u +%H:%M:%S)] $*" >&2; }
[ -x "$bin" ] || { echo "gpu-check: no binary at $bin (build it with scripts/build-cuda.sh; pass --bin)" >&2; exit 2; }
for d in "$fashion" "$cifar"; do
  [ -d "$d" ] || { echo "gpu-check: no data directory $d (pass --fashion / --cifar)" >&2; exit 2; }
done

if [ "${device%%:*}" = cuda ]; then
  # cuBLAS, cuRAND and NVRTC from PyTorch's pip packages (nvidia-*), libcuda from the
  # driver: put every nvidia/*/lib directory of the Python install on the loader's path.
  libs=$("$python" - <<'PY' 2>/dev/null || true
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
dirs = sorted({os.path.dirname(p) for r in roots for p in glob.glob(os.path.join(r, "nvidia", "*", "lib", "*.so*"))})
print(":".join(dirs))
PY
)
  # cuRAND is not in every PyTorch: a CUDA toolkit's libraries too, where one is installed.
  for d in ${CUDA_HOME:+$CUDA_HOME/lib64} /usr/local/cuda/lib64 /usr/local/cuda-13.0/lib64; do
    [ -d "$d" ] && libs=$libs:$d
  done
  export LD_LIBRARY_PATH="${libs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  missing=$(ldd "$bin" | grep "not found" || true)
  if [ -n "$missing" ]; then
    echo "gpu-check: the binary's CUDA libraries are not all found:" >&2
    echo "$missing" >&2
    echo "(searched the driver's libraries and PyTorch's nvidia-* packages: $libs)" >&2
    exit 2
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv >&2 || true
  torch_device=cuda
  runs_small=()
  check_small=()
else
  # The dry run: the same code on the CPU, scaled down to minutes.
  torch_device=cpu
  check_small=(--lenet-samples 100 --vgg11-samples 4 --repeats 1 --sharpness-samples 20 --eigenpairs 3)
  runs_small=(--set fashion_mnist.gd_iterations=6 --set fashion_mnist.iterations=4
              --set fashion_mnist.metrics_every=2 --set fashion_mnist.gd_metrics_every=0
              --set fashion_mnist.train_samples=60 --set fashion_mnist.corrupted=10
              --set fashion_mnist.test_samples=100 --set fashion_mnist.sharpness_samples=4
              --set fashion_mnist.hessian_spectrum=3 --set fashion_mnist.trace_probes=2
              --set noise.gld_leading.k=3 --set noise.gld_hessian.k=3)
fi
git_info=$("$bin" --version 2>/dev/null || echo "noiselab (version unknown)")

say "1/3 device-check on $device"
rc=0
"$bin" device-check --device "$device" --fashion "$fashion" --cifar "$cifar" \
  --json "$out/ops.json" "${check_small[@]}" > "$out/ops.tsv" || rc=$?
[ "$rc" -le 1 ] || { echo "gpu-check: device-check failed to run (exit $rc)" >&2; exit "$rc"; }
check_rc=$rc

say "2/3 PyTorch on $torch_device"
torch_args=(--device "$torch_device" --fashion "$fashion" --cifar "$cifar")
if [ "$torch_device" = cpu ]; then
  torch_args+=(--lenet-samples 100 --vgg11-samples 4 --repeats 1 --sharpness-samples 20 --eigenpairs 3)
fi
if "$python" -c 'import torch, scipy, numpy' 2>/dev/null; then
  "$python" scripts/bench_torch_gpu.py "${torch_args[@]}" > "$out/torch.tsv" || say "PyTorch side failed (see above)"
else
  say "no torch/scipy/numpy for $python: PyTorch side skipped"
fi

say "3/3 end to end: fashion_mnist_quick (limit ${fashion_limit}s), cifar10_vgg11 on 4,000 images (limit ${cifar_limit}s)"
runs=$(mktemp -d)
timed_run() { # name limit args…
  local name=$1 limit=$2; shift 2
  local start=$SECONDS rc=0
  timeout -s INT -k 120 "$limit" "$bin" run "$@" --device "$device" --headless --out "$runs/$name" \
    > "$out/$name.log" 2>&1 || rc=$?
  echo "# $name: exit $rc after $((SECONDS - start)) s (limit $limit s; exit 130 = stopped at the limit, resumable)" >> "$out/$name.log"
  say "$name: exit $rc after $((SECONDS - start)) s"
}
timed_run fashion "$fashion_limit" fashion_mnist_quick --data-dir "$fashion" "${runs_small[@]}"
if [ "$torch_device" = cpu ]; then
  cifar_args=(--set cifar10.train_samples=8 --set cifar10.test_samples=8 --set noise.batch_size=4
              --set cifar10.gd_iterations=2 --set cifar10.iterations=2 --set cifar10.metrics_every=1
              --set cifar10.gd_metrics_every=1 --set cifar10.sharpness_samples=2)
else
  cifar_args=(--set cifar10.train_samples=4000 --set cifar10.test_samples=1000)
fi
timed_run cifar "$cifar_limit" cifar10_vgg11 --data-dir "$cifar" "${cifar_args[@]}"
for r in fashion cifar; do
  [ -d "$runs/$r" ] && "$bin" inspect "$runs/$r" >> "$out/$r.log" 2>&1 || true
done
tar czf "$out/records.tgz" -C "$runs" . 2>/dev/null || say "records.tgz: some files could not be read"

# The side-by-side table: noiselab / PyTorch per operation.
"$python" - "$out" "$device" "$git_info" <<'PY' > "$out/summary.md"
import csv, sys
out, device, version = sys.argv[1:]
def table(path):
    try:
        rows = [l for l in open(path) if not l.startswith("#")]
    except OSError:
        return {}
    return {(r["arch"], r["operation"]): r for r in csv.DictReader(rows, delimiter="\t")}
ours, theirs = table(f"{out}/ops.tsv"), table(f"{out}/torch.tsv")
head = next((l[1:].strip() for l in open(f"{out}/torch.tsv") if l.startswith("#")), "PyTorch: not run") if theirs else "PyTorch: not run"
print(f"# gpu-check on {device}: {version}; {head}\n")
print("| network | operation | noiselab (s) | PyTorch (s) | ratio | error vs f64 CPU | tolerance | |")
print("|---|---|---:|---:|---:|---:|---:|---|")
for key, r in ours.items():
    t = theirs.get(key)
    ratio = f"{float(r['seconds']) / float(t['seconds']):.2f}" if t else "–"
    print(f"| {key[0]} | {key[1]} ({r['detail']}) | {float(r['seconds']):.4f} | "
          f"{float(t['seconds']):.4f} | {ratio} | {float(r['error']):.1e} | {r['tolerance']} | "
          f"{'ok' if r['ok'] == 'true' else 'FAILED'} |" if t else
          f"| {key[0]} | {key[1]} ({r['detail']}) | {float(r['seconds']):.4f} | – | – | "
          f"{float(r['error']):.1e} | {r['tolerance']} | {'ok' if r['ok'] == 'true' else 'FAILED'} |")
PY
cat "$out/summary.md" >&2
say "done: $(ls "$out" | tr '\n' ' ')"
exit "$check_rc"
