#!/usr/bin/env bash
# ONNX Runtime with its CUDA execution provider, for the CUDA image (Dockerfile,
# VARIANT=cuda) and for running a `--features cuda` build on a GPU machine: the shared
# libraries of the pinned `onnxruntime-gpu` wheel and of the NVIDIA wheels with the
# CUDA 13 runtime, cuBLAS, cuRAND, cuFFT, NVRTC and cuDNN 9 it needs, every wheel
# checked by pip against the sha256 in deploy/tools/requirements-ort-cuda.lock, into
# one directory, .deps/onnxruntime-gpu-1.31.1/ (ONNX Runtime loads its providers from
# beside itself, and the provider and the NVIDIA libraries find each other through
# their RUNPATH $ORIGIN).
# Then checks that every library there resolves each library it links, in that
# directory or the system, except libcuda.so.1: the NVIDIA driver, which the GPU
# host provides (the NVIDIA container toolkit mounts it into containers).
# About 1.8 GB of wheels, 2.5 GB unpacked. Idempotent: a second run only re-checks.
# Use: ORT_DYLIB_PATH=$PWD/.deps/onnxruntime-gpu/libonnxruntime.so.1.31.1
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION="1.31.1"
LOCK="deploy/tools/requirements-ort-cuda.lock"
DIR=".deps/onnxruntime-gpu-${ORT_VERSION}"
STAMP="$DIR/.lock.sha256"
# The libraries taken from the onnxruntime-gpu wheel (not the TensorRT provider, not
# the Python binding).
ORT_MEMBERS=(
  "onnxruntime/capi/libonnxruntime.so.${ORT_VERSION}"
  "onnxruntime/capi/libonnxruntime_providers_shared.so"
  "onnxruntime/capi/libonnxruntime_providers_cuda.so"
)

mkdir -p .deps
exec 9>.deps/.onnxruntime-gpu.lock
flock 9

want="$(sha256sum "$LOCK" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "install-ort-cuda: onnxruntime-gpu ${ORT_VERSION} and CUDA 13 / cuDNN 9 libraries from PyPI"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$tmp/wheels" -r "$LOCK"
  rm -rf "$DIR"
  mkdir -p "$DIR"
  for wheel in "$tmp"/wheels/*.whl; do
    case "$(basename "$wheel")" in
      onnxruntime_gpu-*) unzip -q -j -o "$wheel" "${ORT_MEMBERS[@]}" -d "$DIR" ;;
      nvidia_*) unzip -q -j -o "$wheel" 'nvidia/*/lib/lib*.so*' -d "$DIR" ;;
      *) echo "install-ort-cuda: unexpected wheel $wheel" >&2; exit 1 ;;
    esac
  done
  echo "$want" > "$STAMP"
fi
ln -sfn "onnxruntime-gpu-${ORT_VERSION}" .deps/onnxruntime-gpu

# Every link of every library resolves, but the driver's.
missing=""
for lib in "$DIR"/lib*.so*; do
  unresolved="$(LD_LIBRARY_PATH="$DIR" ldd "$lib" 2>&1 | awk '/not found/ { print $1 }' \
    | grep -v -x 'libcuda.so.1' || true)"
  [ -z "$unresolved" ] || missing+="  $(basename "$lib"): $(tr '\n' ' ' <<<"$unresolved")"$'\n'
done
if [ -n "$missing" ]; then
  printf 'install-ort-cuda: unresolved libraries:\n%s' "$missing" >&2
  exit 1
fi
for lib in libonnxruntime.so.${ORT_VERSION} libonnxruntime_providers_cuda.so libcudart.so.13 \
  libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libcufft.so.12 libnvrtc.so.13 libcudnn.so.9; do
  [ -f "$DIR/$lib" ] || { echo "install-ort-cuda: $lib missing from $DIR" >&2; exit 1; }
done
echo "install-ort-cuda: ok ($(du -sh "$DIR" | cut -f1) in $DIR; ORT_DYLIB_PATH=$(pwd)/$DIR/libonnxruntime.so.${ORT_VERSION})"
