#!/usr/bin/env bash
# Generates the vargid.v1 Go stubs from the repository's proto into vargidpb/ (not
# committed, so they never drift from the proto). The plugins protoc-gen-go and
# protoc-gen-go-grpc are this module's tools, at the versions go.mod pins; protoc is
# the one grpcio-tools ships (scripts/setup-python.sh installs it in .venv).
#   examples/go/generate.sh && (cd examples/go && go run . identify PHOTO)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false"

plugins="$(mktemp -d)"
trap 'rm -rf "$plugins"' EXIT
cd "$here"
go build -o "$plugins/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$plugins/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc

proto="vargid/v1/face_service.proto"
package="vargid.dev/examples/go/vargidpb"
rm -rf vargidpb && mkdir vargidpb
"$python" -m grpc_tools.protoc -I "$root/proto" \
  --plugin=protoc-gen-go="$plugins/protoc-gen-go" \
  --plugin=protoc-gen-go-grpc="$plugins/protoc-gen-go-grpc" \
  --go_out=vargidpb --go_opt=paths=source_relative --go_opt="M$proto=$package" \
  --go-grpc_out=vargidpb --go-grpc_opt=paths=source_relative --go-grpc_opt="M$proto=$package" \
  "$root/proto/$proto"
# source_relative keeps the proto's folders; the package is the folder itself.
mv vargidpb/vargid/v1/*.go vargidpb/ && rm -rf vargidpb/vargid
echo "generate: vargidpb/ from proto/$proto"
