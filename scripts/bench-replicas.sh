#!/usr/bin/env bash
# Runs `vargid-bench replicas` against a throwaway PostgreSQL 15 (Debian's package,
# scripts/install-test-deps.sh) started on a free loopback port and removed after.
# Usage: scripts/bench-replicas.sh [--release] [vargid-bench replicas options]
set -euo pipefail
cd "$(dirname "$0")/.."
profile_dir=target/debug; cargo_profile=()
if [ "${1:-}" = "--release" ]; then profile_dir=target/release; cargo_profile=(--release); shift; fi
./scripts/install-test-deps.sh >/dev/null
cargo build "${cargo_profile[@]}" --quiet --bin vargid --bin vargid-bench

bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
root=$(mktemp -d)
as_pg=()
if [ "$(id -u)" -eq 0 ]; then chown postgres "$root"; as_pg=(runuser -u postgres --); fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as_pg[@]}" "$bin/initdb" -U vargid --auth=trust -E UTF8 -D "$root/data" >/dev/null
"${as_pg[@]}" "$bin/pg_ctl" -D "$root/data" -l "$root/log" -w \
  -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$root" start >/dev/null
trap '"${as_pg[@]}" "$bin/pg_ctl" -D "$root/data" -m fast -w stop >/dev/null; rm -rf "$root"' EXIT

"$profile_dir/vargid-bench" replicas --postgres-url "postgresql://vargid@127.0.0.1:$port/postgres" "$@"
