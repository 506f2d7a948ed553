#!/usr/bin/env bash
# Installs cargo-fuzz (the libFuzzer driver for Rust) at a pinned version into
# .deps/cargo-fuzz/bin, built from crates.io source with its own Cargo.lock
# (--locked; cargo checks every crate against the registry's checksum).
# Idempotent: an installed binary at the pinned version is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION="0.13.2"
ROOT=".deps/cargo-fuzz"

if [ -x "$ROOT/bin/cargo-fuzz" ] && "$ROOT/bin/cargo-fuzz" --version 2>/dev/null | grep -qx "cargo-fuzz ${CARGO_FUZZ_VERSION}"; then
  exit 0
fi
echo "install-cargo-fuzz: cargo-fuzz ${CARGO_FUZZ_VERSION} (about 2 minutes)"
cargo install --quiet --locked --force cargo-fuzz --version "${CARGO_FUZZ_VERSION}" --root "$ROOT"
