#!/usr/bin/env bash
# What the service's test-time flip (model.flip_test) gains and costs, through the
# running service: LFW 10-fold and LFW 1:N with the flip off and on.
#
#   scripts/lfw-service-flip.sh [MODEL.onnx]    (default models/vargfacenet.onnx)
#   VARGID_LFW_FLIPS=false scripts/lfw-service-flip.sh MODEL.onnx   (the flip off only)
#   VARGID_PROFILE=release scripts/lfw-service-flip.sh ...          (the release build; default dev)
#
# For each setting: starts vargid on a loopback port with MODEL and an empty
# temporary gallery, sends every LFW photo named by pairs.txt once to Embed
# (vargid-bench lfw --no-client-flip: the embedding a caller gets), and scores the
# embeddings with `python -m vargface.evaluate --embeddings`. Prints accuracy,
# 1:N rank-1 and FNIR, and photos/s (the cost). LFW comes from VARGID_LFW_DIR
# (default ../shared/data/lfw); figures go to target/lfw-flip/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/start-vargid.sh

MODEL="${1:-models/vargfacenet.onnx}"
LFW="${VARGID_LFW_DIR:-../shared/data/lfw}"
ADDR="127.0.0.1:${VARGID_LFW_PORT:-50072}"
OUT="target/lfw-flip/$(basename "$MODEL" .onnx)"
mkdir -p "$OUT"

bash scripts/install-deps.sh >/dev/null
bash scripts/setup-python.sh >/dev/null
build_vargid

for flip in ${VARGID_LFW_FLIPS:-false true}; do
  data="$(mktemp -d)"
  log="$OUT/vargid-flip-$flip.log"
  trap 'kill "${server:-}" 2>/dev/null || true; wait "${server:-}" 2>/dev/null || true; rm -rf "$data"' EXIT
  start_vargid "$log" VARGID_SERVER__LISTEN="$ADDR" VARGID_METRICS__LISTEN="" VARGID_GALLERY__DATA_DIR="$data" \
    VARGID_MODEL__PATH="$MODEL" VARGID_MODEL__FLIP_TEST="$flip"
  "$bin/vargid-bench" lfw --addr "$ADDR" --lfw "$LFW" --no-client-flip \
    --out "$OUT/flip-$flip-embeddings.json" | tee "$OUT/flip-$flip-bench.txt"
  kill "$server"; wait "$server" 2>/dev/null || true
  rm -rf "$data"
  echo "== $MODEL through the service, model.flip_test = $flip"
  .venv/bin/python -m vargface.evaluate --embeddings "$OUT/flip-$flip-embeddings.json" --lfw "$LFW" \
    --json "$OUT/flip-$flip.json"
done
