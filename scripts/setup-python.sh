#!/usr/bin/env bash
# Creates .venv with the training pipeline's pinned requirements (PyTorch, onnx,
# onnxruntime) and the vargface package. pip checks every download against the
# sha256 in training/requirements.lock. Idempotent: skips when already up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
LOCK="training/requirements.lock"
STAMP=".venv/.requirements.sha256"
want="$(sha256sum "$LOCK" training/pyproject.toml | sha256sum | cut -d' ' -f1)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "setup-python: .venv up to date"
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --require-hashes --no-deps -r "$LOCK"
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e training
echo "$want" > "$STAMP"
echo "setup-python: ok"
