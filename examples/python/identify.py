"""Who is in a photo: every face, its best candidates and whether they match.

    python examples/python/identify.py PHOTO [--top-k 3]
"""

import argparse
import sys

import grpc

from vargid_api import connect, pb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--gallery", default="")
    parser.add_argument("--address")
    args = parser.parse_args()

    stub = connect(args.address)
    try:
        reply = stub.Identify(pb.IdentifyRequest(image=pb.Image(encoded=open(args.photo, "rb").read()),
                                                 top_k=args.top_k, gallery=args.gallery), timeout=30)
    except grpc.RpcError as e:
        print(f"identify: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    if not reply.faces:
        print("no face found")
    for i, face in enumerate(reply.faces, 1):
        box = face.face.box
        print(f"face {i} at x={box.x:.0f} y={box.y:.0f} {box.width:.0f}x{box.height:.0f}")
        for c in face.candidates:
            print(f"  {c.identity_id} {c.score:.3f} {'MATCH' if c.is_match else '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
