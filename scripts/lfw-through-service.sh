#!/usr/bin/env bash
# LFW View 2 through the running service vs the Python evaluation of the same model.
#
#   scripts/lfw-through-service.sh [MODEL.onnx]    (default models/vargfacenet.onnx)
#
# Starts vargid on a loopback port with MODEL and an empty temporary gallery, sends
# every LFW photo named by pairs.txt to Embed (vargid-bench lfw), scores those
# embeddings with `python -m vargface.evaluate --embeddings`, then runs
# `python -m vargface.evaluate --model MODEL` on the same photos, and prints both.
# LFW comes from VARGID_LFW_DIR (default ../shared/data/lfw). Figures and
# embeddings go to target/lfw/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/start-vargid.sh

MODEL="${1:-models/vargfacenet.onnx}"
LFW="${VARGID_LFW_DIR:-../shared/data/lfw}"
ADDR="127.0.0.1:${VARGID_LFW_PORT:-50071}"
OUT="target/lfw"
mkdir -p "$OUT"

bash scripts/install-deps.sh >/dev/null
bash scripts/setup-python.sh >/dev/null
build_vargid

data="$(mktemp -d)"
log="$OUT/vargid.log"
trap 'kill "${server:-}" 2>/dev/null || true; wait "${server:-}" 2>/dev/null || true; rm -rf "$data"' EXIT
start_vargid "$log" VARGID_SERVER__LISTEN="$ADDR" VARGID_METRICS__LISTEN="" VARGID_GALLERY__DATA_DIR="$data" \
  VARGID_MODEL__PATH="$MODEL"

"$bin/vargid-bench" lfw --addr "$ADDR" --lfw "$LFW" --out "$OUT/service-embeddings.json"
kill "$server"; wait "$server" 2>/dev/null || true

echo "== through the service (gRPC Embed on the raw photos)"
.venv/bin/python -m vargface.evaluate --embeddings "$OUT/service-embeddings.json" --lfw "$LFW" \
  --json "$OUT/service.json"
echo "== python -m vargface.evaluate --model $MODEL"
.venv/bin/python -m vargface.evaluate --model "$MODEL" --lfw "$LFW" --json "$OUT/python.json" \
  --dump-embeddings "$OUT/python-embeddings.json"
.venv/bin/python - "$OUT" <<'PY'
import json, sys
import numpy as np
out = sys.argv[1]
service, python = (json.load(open(f"{out}/{n}.json")) for n in ("service", "python"))
gap = 100 * (service["accuracy_mean"] - python["accuracy_mean"])
print(f"service - python: {gap:+.2f} accuracy points "
      f"(service {100 * service['accuracy_mean']:.2f}%, python {100 * python['accuracy_mean']:.2f}%)")
a, b = (json.load(open(f"{out}/{n}-embeddings.json")) for n in ("service", "python"))
cos = []
for name, v in a.items():
    x, y = np.asarray(v), np.asarray(b[name])
    cos.append(float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)))
cos = np.sort(cos)
print(f"per-image cosine, service vs python embedding: median {np.median(cos):.4f}, "
      f"1st percentile {cos[len(cos) // 100]:.4f}, min {cos[0]:.4f}")
PY
