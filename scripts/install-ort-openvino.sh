#!/usr/bin/env bash
# ONNX Runtime with Intel's OpenVINO execution provider (model.execution_provider =
# "openvino"): the shared libraries of the pinned PyPI `onnxruntime-openvino` wheel,
# checked by sha256, into .deps/onnxruntime-openvino-1.24.1/ (ONNX Runtime loads the
# provider from beside itself; the provider finds OpenVINO and TBB through RUNPATH
# $ORIGIN). Only the CPU plugin is taken (no GPU or NPU plugin). About 84 MB of wheel,
# 150 MB unpacked. Idempotent: a second run only re-checks.
# 1.24.1 is the newest onnxruntime-openvino on PyPI; the ort crate asks for API 24,
# which 1.24.1, the CPU library (1.26.0) and the CUDA one (1.31.1) all provide.
# Use: model.execution_provider = "openvino" (the server then loads
# .deps/onnxruntime-openvino/libonnxruntime.so unless model.onnxruntime_library says otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION="1.24.1"
WHEEL="onnxruntime_openvino-${ORT_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
WHEEL_SHA256="3007c803634cc69c6d52af1dea7ce729d9bb62b9a11070fd2f959119199007a8"
DIR=".deps/onnxruntime-openvino-${ORT_VERSION}"
MEMBERS=(
  "libonnxruntime.so.${ORT_VERSION}"
  libonnxruntime_providers_shared.so
  libonnxruntime_providers_openvino.so
  libopenvino.so.2541
  libopenvino_c.so.2541
  libopenvino_intel_cpu_plugin.so
  libopenvino_auto_plugin.so
  libopenvino_hetero_plugin.so
  libopenvino_onnx_frontend.so.2541
  libtbb.so.12
  libtbbmalloc.so
)

mkdir -p .deps
exec 9>.deps/.onnxruntime-openvino.lock
flock 9

if [ ! -f "$DIR/.complete" ]; then
  echo "install-ort-openvino: onnxruntime-openvino ${ORT_VERSION} from PyPI"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_28_x86_64 -d "$tmp" \
    "onnxruntime-openvino==${ORT_VERSION}"
  echo "${WHEEL_SHA256}  $tmp/${WHEEL}" | sha256sum -c --quiet -
  rm -rf "$DIR"
  mkdir -p "$DIR"
  unzip -q -j -o "$tmp/${WHEEL}" "${MEMBERS[@]/#/onnxruntime/capi/}" -d "$DIR"
  touch "$DIR/.complete"
fi
ln -sfn "libonnxruntime.so.${ORT_VERSION}" "$DIR/libonnxruntime.so"
ln -sfn "onnxruntime-openvino-${ORT_VERSION}" .deps/onnxruntime-openvino
# Every library must resolve what it links, here or in the system.
missing="$(cd "$DIR" && for lib in *.so*; do LD_LIBRARY_PATH=. ldd "$lib" | grep 'not found' || true; done)"
if [ -n "$missing" ]; then
  echo "install-ort-openvino: unresolved libraries:" >&2
  echo "$missing" >&2
  exit 1
fi
echo "install-ort-openvino: ok ($(pwd)/.deps/onnxruntime-openvino/libonnxruntime.so)"
