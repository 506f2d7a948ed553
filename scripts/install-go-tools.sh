#!/usr/bin/env bash
# Installs the Go tools that deployment, its tests and the load test use, each at a
# pinned version, into .deps/bin/ (built from source with this machine's Go; the go
# command checks every module it downloads against go.sum / the Go checksum database,
# so a pinned version always builds from the same source):
#   ghz                the gRPC load tester (make loadtest)
#   grpc-health-probe  the container's and compose's health check (Dockerfile)
#   kustomize          renders the Kubernetes overlays before they are validated
#   composecheck       deploy/tools/composecheck: validates docker-compose.yml with
#                      compose-go, the loader of the docker compose CLI
#   dockerfilecheck    deploy/tools/dockerfilecheck: checks the Dockerfile with
#                      BuildKit's Dockerfile frontend (parse, LLB conversion, lint)
#                      (both from the module deploy/tools, versions fixed by its go.sum)
# Usage: scripts/install-go-tools.sh [TOOL...]   (no TOOL: all of them)
# Idempotent: a tool already built at its pinned version is kept.
# The Dockerfile's `tools` stage runs this same script for grpc-health-probe.
set -euo pipefail
cd "$(dirname "$0")/.."

GHZ_VERSION="v0.121.0"
HEALTH_PROBE_VERSION="v0.4.63"
# v5.8.3 needs Go 1.27; v5.8.2 is the newest that builds with Go 1.26.
KUSTOMIZE_VERSION="v5.8.2"

BIN="$(pwd)/.deps/bin"
mkdir -p "$BIN"
export GOBIN="$BIN" GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-buildvcs=false -trimpath"

command -v go >/dev/null || { echo "install-go-tools: needs Go (1.24 or newer) on PATH" >&2; exit 1; }

# One installer at a time (tests may call this in parallel).
exec 9>"$BIN/.install.lock"
flock 9

# The module version a Go binary was built from ("" if absent or not a Go binary).
built_version() {
  [ -x "$1" ] || return 0
  go version -m "$1" 2>/dev/null | awk '$1 == "mod" { print $3; exit }'
}

install_module() { # name package version
  local name="$1" pkg="$2" version="$3"
  if [ "$(built_version "$BIN/$name")" = "$version" ]; then
    return 0
  fi
  echo "install-go-tools: $name $version"
  go install "$pkg@$version"
}

tools=("$@")
[ "${#tools[@]}" -gt 0 ] || tools=(ghz grpc-health-probe kustomize composecheck dockerfilecheck)
for tool in "${tools[@]}"; do
  case "$tool" in
    ghz) install_module ghz github.com/bojand/ghz/cmd/ghz "$GHZ_VERSION" ;;
    grpc-health-probe)
      install_module grpc-health-probe github.com/grpc-ecosystem/grpc-health-probe "$HEALTH_PROBE_VERSION" ;;
    kustomize) install_module kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION" ;;
    composecheck|dockerfilecheck)
      # The local module deploy/tools: versions fixed by its go.mod and go.sum; a
      # `go build` with nothing changed only checks its cache.
      (cd deploy/tools && go build -mod=readonly -o "$BIN/$tool" "./$tool") ;;
    *) echo "install-go-tools: unknown tool $tool" >&2; exit 2 ;;
  esac
done
echo "install-go-tools: ok (${tools[*]} in .deps/bin)"
