#!/usr/bin/env bash
# Regenerates the hash locks of the deployment tooling's Python packages (exact
# versions and the sha256 PyPI serves for each file), like scripts/lock-python.sh:
#   deploy/tools/requirements-validate.lock  kubernetes-validate and its dependencies,
#                                           for CPython 3.11 on x86_64 Linux (run it on
#                                           such a machine);
#   deploy/tools/requirements-ort-cuda.lock  onnxruntime-gpu and the NVIDIA libraries,
#                                           exactly as listed (no dependencies), for
#                                           the images' platform (manylinux x86_64).
# Not part of any build: the install scripts only read the locks.
set -euo pipefail
cd "$(dirname "$0")/.."

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

write_lock() { # report requirements lock
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
report, source, lock = sys.argv[1:]
items = json.load(open(report))["install"]
lines = [f"# Generated from {source} by scripts/lock-deploy-tools.sh: every package pinned",
         "# with its sha256. Install with pip --require-hashes."]
for item in sorted(items, key=lambda i: i["metadata"]["name"].lower()):
    meta = item["metadata"]
    digest = item["download_info"]["archive_info"]["hashes"]["sha256"]
    lines.append(f"{meta['name']}=={meta['version']} \\\n    --hash=sha256:{digest}")
open(lock, "w").write("\n".join(lines) + "\n")
print(f"lock-deploy-tools: {lock}: {len(items)} packages")
PY
}

python3 -m pip install --dry-run --quiet --ignore-installed --only-binary=:all: \
  --report "$tmp/validate.json" -r deploy/tools/requirements-validate.txt
write_lock "$tmp/validate.json" deploy/tools/requirements-validate.txt \
  deploy/tools/requirements-validate.lock

python3 -m pip install --dry-run --quiet --ignore-installed --no-deps --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --python-version 3.11 --implementation cp --target "$tmp/target" \
  --report "$tmp/cuda.json" -r deploy/tools/requirements-ort-cuda.txt
write_lock "$tmp/cuda.json" deploy/tools/requirements-ort-cuda.txt \
  deploy/tools/requirements-ort-cuda.lock
