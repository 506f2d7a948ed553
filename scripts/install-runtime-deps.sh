#!/usr/bin/env bash
# The Debian packages the vargid binary needs at run time (FAISS's OpenBLAS and
# OpenMP; zlib for cuDNN), and nothing else. The runtime stage of the Dockerfile runs
# it on debian:bookworm-slim; on a build machine (make test runs it) they are
# already there, as dependencies of what scripts/install-deps.sh installs, and it
# only verifies. --slim: also empty apt's package lists afterwards (images).
set -euo pipefail

PACKAGES=(libopenblas0-pthread libgomp1 libstdc++6 zlib1g)

slim=0
[ "${1:-}" = "--slim" ] && slim=1

# shellcheck source=scripts/apt-install.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install_missing install-runtime-deps "${PACKAGES[@]}"
if [ "$slim" -eq 1 ]; then
  rm -rf /var/lib/apt/lists/*
fi
echo "install-runtime-deps: ok (${PACKAGES[*]})"
