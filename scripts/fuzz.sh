#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (see docs/fuzzing.md), each from the seed corpus
# in fuzz/seeds/<target> plus what earlier runs found (fuzz/corpus/<target>, not
# committed). A panic, a failed assertion, an input slower than 10 s or a process over
# 2 GiB fails the run; libFuzzer leaves the input in fuzz/artifacts/<target>/.
#
# Usage: scripts/fuzz.sh [--seconds N | --runs N] [TARGET...]
#   --seconds N  run each target for N seconds (default 15: what `make test` runs)
#   --runs N     run each target for N executions (docs/fuzzing.md: 1000000)
#   TARGET       image_input, request_validation, gallery_record (default: all)
#
# Stable Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags. No sanitizer: the
# code under test is safe Rust (ours has no `unsafe`; the image decoders are pure Rust),
# so what fuzzing looks for is panics, failed assertions, hangs and runaway memory,
# at several times the speed of an AddressSanitizer build.
set -euo pipefail
cd "$(dirname "$0")/.."

limit=(-max_total_time=15)
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) limit=("-max_total_time=$2"); shift 2 ;;
    --runs) limit=("-runs=$2"); shift 2 ;;
    -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(image_input request_validation gallery_record)

./scripts/install-cargo-fuzz.sh
export PATH="$(pwd)/.deps/cargo-fuzz/bin:$PATH" RUSTC_BOOTSTRAP=1
cd fuzz
echo "fuzz: building the targets (instrumented, release)"
build_log="$(mktemp)"
if ! cargo fuzz build --sanitizer none -O >"$build_log" 2>&1; then
  cat "$build_log"
  exit 1
fi
rm -f "$build_log"
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "fuzz: $target (${limit[*]})"
  log="$(mktemp)"
  if ! cargo fuzz run --sanitizer none -O "$target" "corpus/$target" "seeds/$target" -- \
      "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: $target FAILED; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^(#[0-9]+\s+DONE|stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb))' "$log" | sed 's/^/  /'
  rm -f "$log"
done
