#!/usr/bin/env bash
# Installs what building and running vargid needs and is not already here:
#   - Debian packages for building FAISS from source (faiss crate, feature "static");
#   - the ONNX Runtime shared library, taken from the pinned PyPI `onnxruntime` wheel
#     and checked by sha256, into .deps/onnxruntime/.
# Idempotent: a second run only verifies. The Dockerfile's builder stage runs this same script.
set -euo pipefail
cd "$(dirname "$0")/.."

# 1.26.0, not the newest: from 1.27.0 on (1.27.0, 1.28.0, 1.31.1, 1.32.0 measured)
# the CPU provider runs VarGFaceNet on real face crops about half as fast on an AVX2
# AMD EPYC (docs/benchmarks.md, "ONNX Runtime versions"). The CUDA build stays on
# onnxruntime-gpu 1.31.1 (scripts/install-ort-cuda.sh); the ort crate asks for API 26.
ORT_VERSION="1.26.0"
ORT_WHEEL="onnxruntime-${ORT_VERSION}-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
ORT_WHEEL_SHA256="11a8df4dcfe9ad5ff0bd71a7571dbed019fabc7594676c89fe8b86ea029c246f"
ORT_DIR=".deps/onnxruntime-${ORT_VERSION}"

APT_PACKAGES=(cmake g++ make libopenblas-dev python3 python3-pip python3-venv unzip)

# shellcheck source=scripts/apt-install.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install_missing install-deps "${APT_PACKAGES[@]}"

if [ ! -f "${ORT_DIR}/libonnxruntime.so.${ORT_VERSION}" ]; then
  echo "install-deps: ONNX Runtime ${ORT_VERSION} from PyPI"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 -d "$tmp" "onnxruntime==${ORT_VERSION}"
  echo "${ORT_WHEEL_SHA256}  $tmp/${ORT_WHEEL}" | sha256sum -c --quiet -
  mkdir -p "${ORT_DIR}"
  unzip -q -j -o "$tmp/${ORT_WHEEL}" "onnxruntime/capi/libonnxruntime.so.${ORT_VERSION}" \
    "onnxruntime/capi/libonnxruntime_providers_shared.so" -d "${ORT_DIR}"
fi
# A version-free name for configs and tests: .deps/onnxruntime/libonnxruntime.so
ln -sfn "libonnxruntime.so.${ORT_VERSION}" "${ORT_DIR}/libonnxruntime.so"
ln -sfn "onnxruntime-${ORT_VERSION}" .deps/onnxruntime
# The face detector the service runs (and the distillation teacher), as fp32 ONNX.
bash scripts/prepare-models.sh
echo "install-deps: ok (ORT_DYLIB_PATH=$(pwd)/.deps/onnxruntime/libonnxruntime.so, ONNX Runtime ${ORT_VERSION})"
