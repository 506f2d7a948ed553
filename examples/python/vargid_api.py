"""The vargid.v1 gRPC stubs, generated from the repository's proto at import time
(grpcio-tools), and a channel helper.

Copy this file beside your code, or generate the stubs once with
    python -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. proto/vargid/v1/face_service.proto
"""

import os
import sys
import tempfile
from pathlib import Path

import grpc
from grpc_tools import protoc

PROTO_ROOT = Path(os.environ.get("VARGID_PROTO_DIR", Path(__file__).resolve().parents[2] / "proto"))


def _generate():
    out = tempfile.mkdtemp(prefix="vargid-stubs-")
    include = Path(protoc.__file__).parent / "_proto"
    code = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={out}",
                        f"--grpc_python_out={out}", str(PROTO_ROOT / "vargid/v1/face_service.proto")])
    if code != 0:
        raise RuntimeError(f"protoc failed on {PROTO_ROOT}")
    sys.path.insert(0, out)


_generate()
from vargid.v1 import face_service_pb2 as pb  # noqa: E402
from vargid.v1 import face_service_pb2_grpc as pb_grpc  # noqa: E402


def connect(address: str | None = None, api_key: str | None = None) -> "pb_grpc.FaceServiceStub":
    """A stub for the server at `address` (default $VARGID_ADDRESS or 127.0.0.1:50051),
    sending `authorization: Bearer <api_key>` when a key is given (or $VARGID_API_KEY)."""
    address = address or os.environ.get("VARGID_ADDRESS", "127.0.0.1:50051")
    api_key = api_key or os.environ.get("VARGID_API_KEY")
    channel = grpc.insecure_channel(address)
    if api_key:
        channel = grpc.intercept_channel(channel, _BearerKey(api_key))
    return pb_grpc.FaceServiceStub(channel)


class _BearerKey(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, key: str):
        self.metadata = (("authorization", f"Bearer {key}"),)

    def intercept_unary_unary(self, continuation, details, request):
        details = details._replace(metadata=tuple(details.metadata or ()) + self.metadata)
        return continuation(details, request)
