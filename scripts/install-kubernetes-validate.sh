#!/usr/bin/env bash
# Creates .deps/kubernetes-validate/, a small virtual environment with the PyPI
# package kubernetes-validate (the Kubernetes JSON schemas of versions 1.25 to 1.37,
# strict variants included, and their validator; no network needed at validation
# time). pip checks every download against deploy/tools/requirements-validate.lock.
# Idempotent: skips when the environment matches the lock.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=".deps/kubernetes-validate"
LOCK="deploy/tools/requirements-validate.lock"
STAMP="$VENV/.lock.sha256"

mkdir -p .deps
exec 9>.deps/.kubernetes-validate.lock
flock 9

want="$(sha256sum "$LOCK" | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/kubernetes-validate" ]; then
  exit 0
fi
echo "install-kubernetes-validate: $VENV from $LOCK"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
  --no-deps --only-binary=:all: -r "$LOCK"
echo "$want" > "$STAMP"
echo "install-kubernetes-validate: ok"
