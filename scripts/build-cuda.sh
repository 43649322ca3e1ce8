#!/usr/bin/env bash
# Build `noiselab` with the CUDA backend (`--features cuda`) on a machine with no GPU
# and no CUDA install; the binary is then carried to the GPU machine.
#
#   bash scripts/build-cuda.sh [extra cargo args...]   # → target/cuda/release/noiselab
#
# The CUDA build goes to target/cuda by default, beside the CPU build: the CUDA binary
# needs the driver's libcuda.so.1 to start at all, so it must not replace
# target/release/noiselab on a machine without a GPU. CARGO_TARGET_DIR overrides it.
#
# What it does (each step is skipped when already done, so a second run is cheap):
#  1. pip-installs the CUDA 13.0 toolchain from PyPI wheels into target/cuda-toolchain
#     (nvcc, nvvm/cicc, crt + runtime headers, libcudart, cccl for cub/thrust). It must
#     stay 13.0: a newer nvcc emits PTX that a 580-series driver refuses.
#  2. writes link-only stub libraries (libcuda, libnvrtc, libcublas, libcublasLt,
#     libcurand) with the real SONAMEs into target/cuda-toolchain/nvidia/cu13/lib/stubs:
#     candle enables cudarc's `dynamic-linking`, so these libraries are linked at build
#     time; the stubs define every function cudarc declares, are never on the run-time
#     path, and the real libraries come from the driver and the nvidia-* pip packages.
#  3. cargo build --release --features cuda, with CUDA_HOME pointing at the toolchain
#     (cudarc adds $CUDA_HOME/lib and lib/stubs to the link path, so no RUSTFLAGS).
#
# Environment (all optional):
#   CUDA_COMPUTE_CAP     GPU arch for the kernels, default 90 (H100/H200; cudaforge turns
#                        it into sm_90a, which runs on compute capability 9.0 only)
#   CUDA_TOOLCHAIN_DIR   toolchain prefix, default <repo>/target/cuda-toolchain
#   CARGO_TARGET_DIR     honoured as usual (relative paths are relative to the repo root)
#   CUDAFORGE_THREADS    parallel nvcc jobs for candle-kernels, default: all cores
#
# At run time the GPU machine needs, on the loader path (the binary's NEEDED list):
# libcuda.so.1 (driver >= 580), libcudart.so.13, libcublas.so.13 (which itself needs
# libcublasLt.so.13), libcurand.so.10 -- the CUDA 13 pip packages nvidia-cuda-runtime,
# nvidia-cublas, nvidia-curand (as a cu13 PyTorch installs them, in
# site-packages/nvidia/cu13/lib) -- plus libhdf5_serial.so.103 (not CUDA: hdf5-metno), e.g.
#   LD_LIBRARY_PATH=$(python3 -c 'import nvidia,os;print(os.path.join(nvidia.__path__[0],"cu13","lib"))') ./noiselab ...
# Without them (e.g. no driver) the binary does not start at all: the loader refuses it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CUDA_SERIES=13.0              # the pip wheels' series (== CUDA toolkit version)
export CUDARC_CUDA_VERSION=13000 # cudarc's build.rs wants "{major}0{minor}0"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)}
TOOLCHAIN=${CUDA_TOOLCHAIN_DIR:-$ROOT/target/cuda-toolchain}
CU=$TOOLCHAIN/nvidia/cu13
STUBS=$CU/lib/stubs

say() { printf '==> %s\n' "$*" >&2; }

if ! command -v g++ >/dev/null; then
    say "nvcc needs a host C++ compiler: installing g++ with apt"
    SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
fi

# ---------------------------------------------------------------- 1. toolchain
# Every package is pinned: nvidia-cuda-nvcc's own dependencies (nvvm, crt, runtime)
# are unpinned and would otherwise pull the newest series.
PKGS=(
    "nvidia-cuda-nvcc==$CUDA_SERIES.*"    # nvcc, ptxas, fatbinary, nvlink
    "nvidia-nvvm==$CUDA_SERIES.*"         # cicc + libdevice (nvcc's front end)
    "nvidia-cuda-crt==$CUDA_SERIES.*"     # include/crt/*
    "nvidia-cuda-runtime==$CUDA_SERIES.*" # cuda_runtime.h, cuda_fp16/bf16/fp8.h, libcudart.so.13
    "nvidia-cuda-cccl==$CUDA_SERIES.*"    # cub/thrust/libcu++ (candle-kernels' sort/moe)
)
STAMP=$TOOLCHAIN/.installed
if [[ -x $CU/bin/nvcc && -f $STAMP && "$(cat "$STAMP")" == "${PKGS[*]}" ]]; then
    say "CUDA $CUDA_SERIES toolchain present in $TOOLCHAIN (skipping pip)"
else
    if ! python3 -m pip --version >/dev/null 2>&1; then
        say "pip missing: installing python3-pip with apt"
        SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo
        $SUDO apt-get update
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-pip
    fi
    say "pip-installing ${PKGS[*]} into $TOOLCHAIN"
    mkdir -p "$TOOLCHAIN"
    rm -rf "$TOOLCHAIN/nvidia" "$TOOLCHAIN"/nvidia_*.dist-info "$STAMP"
    PIP=(python3 -m pip install --disable-pip-version-check --no-warn-script-location
         --no-cache-dir --target "$TOOLCHAIN")
    # --target is exempt from PEP 668 in current pips; retry for any that are not.
    if ! "${PIP[@]}" "${PKGS[@]}" 2>"$TOOLCHAIN/pip.err"; then
        cat "$TOOLCHAIN/pip.err" >&2
        grep -q externally-managed "$TOOLCHAIN/pip.err" || exit 1
        say "retrying with --break-system-packages (it only writes to $TOOLCHAIN)"
        rm -rf "$TOOLCHAIN/nvidia" "$TOOLCHAIN"/nvidia_*.dist-info
        "${PIP[@]}" --break-system-packages "${PKGS[@]}"
    fi
    rm -f "$TOOLCHAIN/pip.err"
    "$CU/bin/nvcc" --version | grep -q "release $CUDA_SERIES," ||
        { say "nvcc is not $CUDA_SERIES"; exit 1; }
    printf '%s' "${PKGS[*]}" >"$STAMP"
fi
# `-lcudart` (candle-kernels links its static libmoe against cudart) needs the dev name.
[[ -L $CU/lib/libcudart.so ]] || ln -sfn libcudart.so.13 "$CU/lib/libcudart.so"

# -------------------------------------------------------------- 2. link stubs
# Symbols: every `extern "C" fn` in cudarc's bindings, read from the cudarc source
# that this Cargo.lock resolves to.
CUDARC_DIR=$(cargo metadata --format-version 1 --features cuda |
    python3 -c 'import json,sys,os
m=json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"]=="cudarc"))')
[[ -f $CUDARC_DIR/src/driver/sys/mod.rs ]] || cargo fetch
# lib name : SONAME : cudarc module
LIBS=(cuda:libcuda.so.1:driver nvrtc:libnvrtc.so.13:nvrtc cublas:libcublas.so.13:cublas
      cublasLt:libcublasLt.so.13:cublaslt curand:libcurand.so.10:curand)
STUB_ID="$CUDARC_DIR ${LIBS[*]}"
if [[ -f $STUBS/.stamp && "$(cat "$STUBS/.stamp")" == "$STUB_ID" ]]; then
    say "link stubs present in $STUBS (skipping)"
else
    say "generating link stubs from $CUDARC_DIR into $STUBS"
    mkdir -p "$STUBS"
    for entry in "${LIBS[@]}"; do
        IFS=: read -r name soname module <<<"$entry"
        src=$STUBS/lib$name.c
        grep -A1 'extern "C" {' "$CUDARC_DIR/src/$module/sys/mod.rs" |
            sed -nE 's/^[[:space:]]+fn ([A-Za-z0-9_]+)\(.*/\1/p' | sort -u |
            sed 's/.*/void &(void) {}/' >"$src"
        [[ -s $src ]] || { say "no symbols found for $name"; exit 1; }
        gcc -shared -fPIC -Wl,-soname,"$soname" -o "$STUBS/lib$name.so" "$src"
        say "  lib$name.so (SONAME $soname, $(wc -l <"$src") symbols)"
    done
    printf '%s' "$STUB_ID" >"$STUBS/.stamp"
fi

# ------------------------------------------------------------------ 3. build
export CUDA_HOME=$CU NVCC=$CU/bin/nvcc PATH=$CU/bin:$PATH
say "CUDA_HOME=$CUDA_HOME CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
say "cargo build --release --features cuda $*"
TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda}
[[ $TARGET_DIR = /* ]] || TARGET_DIR=$ROOT/$TARGET_DIR
CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --features cuda "$@"
BIN=$TARGET_DIR/release/noiselab
[[ -x $BIN ]] || { say "expected binary not found: $BIN"; exit 1; }
say "built; NEEDED: $(readelf -d "$BIN" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
echo "$BIN"
