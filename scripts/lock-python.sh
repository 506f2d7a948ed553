#!/usr/bin/env bash
# Regenerates training/requirements.lock (exact versions and sha256 of every package,
# dependencies included) from training/requirements.txt, for CPython 3.11 on
# x86_64 Linux: the platform of the machines and images this project targets.
set -euo pipefail
cd "$(dirname "$0")/.."
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
# Resolved for the interpreter and platform it runs on: run it on such a machine.
python3 -m pip install --dry-run --quiet --ignore-installed --only-binary=:all: \
  --report "$report" -r training/requirements.txt
python3 - "$report" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
lines = ["# Generated from training/requirements.txt by scripts/lock-python.sh: every package,",
         "# dependencies included, pinned with its sha256. Install with pip --require-hashes."]
for item in sorted(report["install"], key=lambda i: i["metadata"]["name"].lower()):
    meta, digest = item["metadata"], item["download_info"]["archive_info"]["hashes"]["sha256"]
    lines.append(f"{meta['name']}=={meta['version']} \\\n    --hash=sha256:{digest}")
open("training/requirements.lock", "w").write("\n".join(lines) + "\n")
print(f"lock-python: {len(report['install'])} packages")
PY
