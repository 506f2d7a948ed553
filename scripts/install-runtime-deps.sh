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

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-runtime-deps: apt packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ "$slim" -eq 1 ]; then
  rm -rf /var/lib/apt/lists/*
fi
echo "install-runtime-deps: ok (${PACKAGES[*]})"
