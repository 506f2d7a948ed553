#!/usr/bin/env bash
# Issue 19's int8 figures in one call, for a CPU with VNNI (AVX512-VNNI or AVX-VNNI),
# where the int8 model is meant to run; on other CPUs it runs too and says so.
#
#   scripts/int8-check.sh [--dev] [--seconds S] [--no-lfw] [--out DIR]
#
# 1. raw speed, one after the other: ONNX Runtime's CPU provider on the float32 model,
#    OpenVINO on float32, on the committed int8 model, and on the asymmetric-range int8
#    variant (`vargface.quantize --preset mixed --float-op Gemm`; quantized here when
#    runs/prepared42k.zip exists, else skipped);
# 2. `vargid-bench baseline` on OpenVINO int8: the service against raw float32 ONNX
#    Runtime and against the per-request Python server, aligned faces and whole photos;
# 3. `vargid-bench overload` on OpenVINO int8;
# 4. LFW 10-fold and 1:N through the service, no flip (scripts/lfw-service-flip.sh):
#    float32 on the CPU provider, then each int8 model on OpenVINO.
# Release build (what the images ship) unless --dev. Everything goes to DIR
# (default target/int8-check); stop other jobs first: the figures are timings.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release seconds=8 lfw=1 out=target/int8-check
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) profile=dev ;;
    --seconds) seconds="$2"; shift ;;
    --no-lfw) lfw=0 ;;
    --out) out="$2"; shift ;;
    *) echo "int8-check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
started=$(date +%s)
step() { echo "int8-check: [$(( $(date +%s) - started )) s] $*"; }

{
  echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores," \
    "family $(lscpu | sed -n 's/^CPU family: *//p') model $(lscpu | sed -n 's/^Model: *//p')"
  echo "vnni: $(grep -o -w -E 'avx512_vnni|avx_vnni' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  echo "date: $(date -u '+%F %H:%M UTC'), profile: ${profile}, seconds per level: ${seconds}"
} | tee "$out/machine.txt"
grep -q -E 'avx512_vnni|avx_vnni' /proc/cpuinfo ||
  echo "int8-check: this CPU has no VNNI: the int8 figures will not be the ones int8 is for" >&2

./scripts/install-deps.sh > "$out/install-deps.log"
./scripts/install-ort-openvino.sh > "$out/install-ort-openvino.log"
./scripts/setup-python.sh > "$out/setup-python.log"
cpu_library="$PWD/.deps/onnxruntime/libonnxruntime.so"
openvino_library="$PWD/.deps/onnxruntime-openvino/libonnxruntime.so"
# The LFW scripts' build (scripts/lib/start-vargid.sh), so that step 4 reuses it.
export VARGID_PROFILE="$profile"
. scripts/lib/start-vargid.sh
step "building vargid and vargid-bench (${profile})"
build_vargid

int8_models=(models/vargfacenet-int8.onnx)
if [ -f runs/prepared42k.zip ]; then
  step "quantizing the asymmetric-range variant"
  .venv/bin/python -m vargface.quantize --prepared runs/prepared42k.zip --preset mixed \
    --float-op Gemm --out "$out/vargfacenet-int8-mixed.onnx" > "$out/quantize-mixed.log" 2>&1
  int8_models+=("$out/vargfacenet-int8-mixed.onnx")
else
  step "no runs/prepared42k.zip: the asymmetric-range variant is skipped"
fi

step "raw speed"
raw() { "$bin/vargid-bench" raw --seconds 3 "$@" 2>&1 | tail -n 1; }
{
  echo "cpu fp32 models/vargfacenet.onnx: $(raw --library "$cpu_library" --execution-provider cpu)"
  echo "openvino fp32 models/vargfacenet.onnx: $(raw --library "$openvino_library" --execution-provider openvino)"
  for m in "${int8_models[@]}"; do
    echo "openvino int8 $m: $(raw --library "$openvino_library" --execution-provider openvino --model "$m")"
  done
} | tee "$out/raw.txt"

step "vargid-bench baseline on OpenVINO int8"
ORT_DYLIB_PATH="$cpu_library" "$bin/vargid-bench" baseline --execution-provider openvino \
  --model models/vargfacenet-int8.onnx --seconds "$seconds" | tee "$out/baseline.md"

step "vargid-bench overload on OpenVINO int8"
ORT_DYLIB_PATH="$cpu_library" VARGID_MODEL__PATH=models/vargfacenet-int8.onnx \
  VARGID_MODEL__EXECUTION_PROVIDER=openvino "$bin/vargid-bench" overload --seconds "$seconds" \
  | tee "$out/overload.md"

if [ "$lfw" = 1 ]; then
  step "LFW through the service, no flip: float32 on the CPU provider"
  VARGID_MODEL__EXECUTION_PROVIDER=cpu VARGID_LFW_FLIPS=false \
    scripts/lfw-service-flip.sh models/vargfacenet.onnx | tail -n 5 | tee "$out/lfw-fp32.txt"
  for m in "${int8_models[@]}"; do
    step "LFW through the service, no flip: $m on OpenVINO"
    VARGID_MODEL__EXECUTION_PROVIDER=openvino VARGID_LFW_FLIPS=false \
      scripts/lfw-service-flip.sh "$m" | tail -n 5 | tee "$out/lfw-$(basename "$m" .onnx).txt"
  done
fi
step "done: $out"
