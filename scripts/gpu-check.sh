#!/usr/bin/env bash
# The CUDA path in one call, for a machine with an NVIDIA GPU: builds vargid and
# vargid-bench with --features cuda (release), runs the model tests on the CUDA
# provider (CUDA must register: no silent CPU fallback), then `vargid-bench batching`:
# raw ONNX Runtime at batch 1 to 256 and the service (max batch 256) at concurrency 1
# to 256, printing faces/s, p50 and p99 as Markdown for docs/benchmarks.md. Written to
# take under 10 minutes on a 16-core GPU machine (FAISS compiles from source first).
#
#   scripts/gpu-check.sh [--cpu] [--seconds S] [--out DIR]
#
# --cpu runs the same steps on the CPU provider (dev profile, no CUDA): it checks the
# script where there is no GPU; its figures are not GPU figures.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=cuda seconds=5 out=target/gpu-check
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) mode=cpu ;;
    --seconds) seconds="$2"; shift ;;
    --out) out="$2"; shift ;;
    *) echo "gpu-check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
started=$(date +%s)
step() { echo "gpu-check: [$(( $(date +%s) - started )) s] $*"; }

./scripts/install-deps.sh > "$out/install-deps.log"
if [ "$mode" = cuda ]; then
  nvidia-smi -L || { echo "gpu-check: no NVIDIA GPU (nvidia-smi failed); use --cpu to check the script" >&2; exit 1; }
  ./scripts/install-ort-cuda.sh > "$out/install-ort-cuda.log"
  export ORT_DYLIB_PATH="$PWD/.deps/onnxruntime-gpu/libonnxruntime.so.1.31.1"
  export LD_LIBRARY_PATH="$PWD/.deps/onnxruntime-gpu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  cargo_flags=(--release --features cuda)
  bin=target/release
  sizes=1,8,32,64,128,256 levels=1,16,64,256 max_batch=256
else
  export ORT_DYLIB_PATH="$PWD/.deps/onnxruntime/libonnxruntime.so"
  cargo_flags=()
  bin=target/debug
  sizes=1,8,32 levels=1,16 max_batch=32
fi

step "building vargid and vargid-bench (${cargo_flags[*]:-dev})"
cargo build "${cargo_flags[@]}" -p vargid-server -p vargid-bench --bins 2>&1 | tail -n 3
step "model tests on the ${mode} provider"
VARGID_TEST_CUDA=$([ "$mode" = cuda ] && echo 1 || echo 0) \
  cargo test "${cargo_flags[@]}" -p vargid-model --test onnx_model -- --nocapture 2>&1 \
  | tee "$out/model-tests.log" | grep -E "^test |test result|not run"
grep -q "test result: ok" "$out/model-tests.log"
step "vargid-bench batching: raw batch ${sizes}, service concurrency ${levels}, ${seconds} s per level"
"$bin/vargid-bench" batching --execution-provider "$mode" --max-batch-size "$max_batch" \
  --batch-sizes "$sizes" --concurrency "$levels" --seconds "$seconds" | tee "$out/batching.md"
{
  echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
  [ "$mode" = cuda ] && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "date: $(date -u +%F), mode: ${mode}, seconds per level: ${seconds}"
} > "$out/machine.txt"
cat "$out/machine.txt"
step "done: $out/batching.md"
