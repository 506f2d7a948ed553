#!/usr/bin/env bash
# Validates the deployment files without a Docker engine or a cluster:
#   - Kubernetes: every overlay in deploy/kubernetes/overlays/ rendered by kustomize,
#     then checked by kubernetes-validate in strict mode (unknown fields are errors)
#     against the Kubernetes 1.30 and 1.37 schemas (the oldest version these
#     manifests support, and the newest the pinned schemas know);
#   - Compose: docker-compose.yml loaded by composecheck (compose-go, the loader of
#     docker compose: Compose specification schema, interpolation, consistency; bind
#     sources and build contexts must exist), with each profile and with all of them;
#   - Dockerfile: checked by dockerfilecheck (BuildKit's Dockerfile frontend: parse,
#     every stage and build argument resolved, conversion to LLB, `docker build
#     --check` lint rules) for VARIANT=cpu and VARIANT=cuda;
#   - the other YAML files under deploy/ (Prometheus, Grafana provisioning) parse.
# Tools: scripts/install-go-tools.sh and scripts/install-kubernetes-validate.sh
# (pinned, checksummed), installed here when missing.
#
# Usage: scripts/validate-deploy.sh                   everything above
#        scripts/validate-deploy.sh --k8s PATH...      only these Kubernetes inputs: a
#                                                      kustomization directory or a
#                                                      manifest file
#        scripts/validate-deploy.sh --compose FILE...  only these Compose files
#        scripts/validate-deploy.sh --dockerfile FILE... only these Dockerfiles
# Exits 1 if anything is invalid (after checking everything asked for).
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSIONS=(1.30.0 1.37.0)
COMPOSE_PROFILES=(cpu gpu replicas)
DOCKER_VARIANTS=(cpu cuda)

k8s=() compose=() dockerfiles=() mode=""
if [ "$#" -eq 0 ]; then
  for overlay in deploy/kubernetes/overlays/*/; do k8s+=("${overlay%/}"); done
  compose=(docker-compose.yml)
  dockerfiles=(Dockerfile)
  mode="all"
fi
while [ "$#" -gt 0 ]; do
  case "$1" in
    --k8s) mode="k8s" ;;
    --compose) mode="compose" ;;
    --dockerfile) mode="dockerfile" ;;
    -*) echo "validate-deploy: unknown option $1" >&2; exit 2 ;;
    *)
      case "$mode" in
        k8s) k8s+=("$1") ;;
        compose) compose+=("$1") ;;
        dockerfile) dockerfiles+=("$1") ;;
        *) echo "validate-deploy: say --k8s, --compose or --dockerfile before $1" >&2; exit 2 ;;
      esac ;;
  esac
  shift
done

./scripts/install-go-tools.sh kustomize composecheck dockerfilecheck >/dev/null
./scripts/install-kubernetes-validate.sh
BIN=.deps/bin
KV=.deps/kubernetes-validate/bin/kubernetes-validate

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failed=0

version_args=()
for v in "${K8S_VERSIONS[@]}"; do version_args+=(-k "$v"); done
for input in "${k8s[@]}"; do
  rendered="$tmp/$(echo "$input" | tr '/' '_').yaml"
  if [ -d "$input" ]; then
    if ! "$BIN/kustomize" build "$input" > "$rendered"; then
      echo "FAIL kubernetes $input: kustomize build failed"
      failed=1
      continue
    fi
  else
    cp "$input" "$rendered"
  fi
  if [ ! -s "$rendered" ]; then
    echo "FAIL kubernetes $input: no resources"
    failed=1
  # --quiet prints only failures and warnings; a warning (a kind without a schema:
  # these manifests use no custom resources) fails too.
  elif out="$("$KV" --strict --quiet "${version_args[@]}" "$rendered" 2>&1)" && [ -z "$out" ]; then
    kinds="$(grep -E '^kind: ' "$rendered" | sed 's/kind: //' | sort | tr '\n' ' ')"
    echo "ok   kubernetes $input (${K8S_VERSIONS[*]}, strict): $kinds"
  else
    echo "FAIL kubernetes $input:"
    echo "$out" | sed "s#$rendered#$input#g; s/^/     /"
    failed=1
  fi
done

for file in "${compose[@]}"; do
  sets=("")
  [ "$mode" = "all" ] && sets=("" "${COMPOSE_PROFILES[@]}")
  for profile in "${sets[@]}"; do
    args=(-q)
    [ -n "$profile" ] && args+=(-profile "$profile")
    label="${profile:-all profiles}"
    if out="$("$BIN/composecheck" "${args[@]}" "$file" 2>&1)"; then
      echo "ok   compose $file ($label)"
    else
      echo "FAIL compose $file ($label):"
      echo "$out" | sed 's/^/     /'
      failed=1
    fi
  done
done

for file in "${dockerfiles[@]}"; do
  for variant in "${DOCKER_VARIANTS[@]}"; do
    if out="$("$BIN/dockerfilecheck" -build-arg "VARIANT=$variant" "$file" 2>&1)"; then
      echo "ok   dockerfile $file (VARIANT=$variant)"
      echo "$out" | tail -n +2 | sed 's/^/    /'
    else
      echo "FAIL dockerfile $file (VARIANT=$variant):"
      echo "$out" | sed 's/^/     /'
      failed=1
    fi
  done
done

if [ "$mode" = "all" ]; then
  yamls=()
  while IFS= read -r f; do yamls+=("$f"); done < <(
    find deploy/prometheus deploy/grafana -name '*.yml' -o -name '*.yaml' | sort)
  if out="$(.deps/kubernetes-validate/bin/python - "${yamls[@]}" 2>&1 <<'PY'
import sys, yaml
for path in sys.argv[1:]:
    with open(path) as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict):
        sys.exit(f"{path}: not a YAML mapping")
PY
  )"; then
    echo "ok   yaml ${yamls[*]}"
  else
    echo "FAIL yaml: $out"
    failed=1
  fi
fi

if [ "$failed" -ne 0 ]; then
  echo "validate-deploy: INVALID"
  exit 1
fi
echo "validate-deploy: all valid"
