#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs on a GPU machine that has a driver and PyTorch but
# no network, no Rust and maybe no HDF5: the CUDA binary (scripts/build-cuda.sh) with the
# non-CUDA shared libraries it needs and this machine's loader, libcudart.so.13 from the
# build's toolchain, and the real data subsets. Under 64 MiB.
#
#   bash scripts/device-bundle.sh [BUNDLE_DIR]       # default runs/device-bundle
#   # there:  tar xJf bundle.tar.xz && bash scripts/gpu-check.sh --bin ./bundle/noiselab \
#   #           --fashion bundle/fashion-mnist-subset --cifar bundle/cifar10-subset --out "$OUT"
#
# bundle/noiselab is a wrapper: it starts the binary with the bundled loader and puts on
# its library path the bundle's libraries, then the driver's libcuda and the CUDA 13
# cuBLAS/cuRAND of PyTorch's nvidia-* packages (found at run time).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/device-bundle}
bin=${CUDA_BIN:-target/cuda/release/noiselab}
toolchain=${CUDA_TOOLCHAIN_DIR:-target/cuda-toolchain}/nvidia/cu13/lib
[ -x "$bin" ] || { echo "device-bundle: no CUDA binary at $bin (bash scripts/build-cuda.sh)" >&2; exit 2; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
b=$stage/bundle
mkdir -p "$b/lib"
strip -o "$b/noiselab.bin" "$bin"
# Every library the binary loads from this machine, except the CUDA ones (driver and
# PyTorch provide those: the stubs it was linked against must never travel).
LD_LIBRARY_PATH=$toolchain/stubs:$toolchain ldd "$bin" | awk '/=>/ {print $1, $3}' |
  while read -r name path; do
    case "$name" in
      libcuda.so*|libcublas*|libcurand*|libnvrtc*) ;;
      *) cp -L "$path" "$b/lib/$name" ;;
    esac
  done
cp -L "$toolchain/libcudart.so.13" "$b/lib/"
loader=$(ldd "$bin" | awk '/ld-linux/ {print $1}')
cp -L "$loader" "$b/lib/ld-linux-x86-64.so.2"
cp -r ../shared/data/fashion-mnist-subset ../shared/data/cifar10-subset "$b/"
cat > "$b/noiselab" <<'EOF'
#!/usr/bin/env bash
# noiselab from the device bundle (scripts/device-bundle.sh).
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
nv=$("$py" - <<'PY' 2>/dev/null
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
print(":".join(sorted({os.path.dirname(p) for r in roots
                       for p in glob.glob(os.path.join(r, "nvidia", "**", "lib", "*.so*"), recursive=True)})))
PY
)
driver=$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 / {print $NF; exit}')
# A CUDA toolkit's own libraries (cuRAND is not in every PyTorch), where one is installed.
toolkit=
for d in ${CUDA_HOME:+$CUDA_HOME/lib64} /usr/local/cuda/lib64 /usr/local/cuda-13.0/lib64; do
  [ -d "$d" ] && toolkit=$toolkit:$d
done
path=$here/lib${driver:+:$(dirname "$driver")}${nv:+:$nv}$toolkit${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CANDLE_GRAD_DO_NOT_DETACH=1
exec "$here/lib/ld-linux-x86-64.so.2" --library-path "$path" "$here/noiselab.bin" "$@"
EOF
chmod +x "$b/noiselab"
mkdir -p "$out"
tar cJf "$out/bundle.tar.xz" -C "$stage" bundle
size=$(stat -c %s "$out/bundle.tar.xz")
echo "device-bundle: $out/bundle.tar.xz, $((size / 1024 / 1024)) MiB ($(ls "$b/lib" | tr '\n' ' '))"
[ "$size" -lt $((56 * 1024 * 1024)) ] || echo "device-bundle: over 56 MiB: with the repository it may not fit the 64 MiB carry" >&2
