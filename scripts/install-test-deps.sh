#!/usr/bin/env bash
# Installs the servers the end-to-end tests start on loopback ports and are not
# already here: PostgreSQL 15 (Debian bookworm's package, from Debian's signed
# archive; the major version is pinned by the package name), for the shared-gallery
# backend's tests. The tests run its programs from /usr/lib/postgresql/15/bin as the
# package's `postgres` user when they run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/apt-install.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install_missing install-test-deps postgresql-15

# The tests start clusters of their own on free ports, beside any the package started.
/usr/lib/postgresql/15/bin/postgres --version
