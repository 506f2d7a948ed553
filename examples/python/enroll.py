"""Enroll one person from one or more photos.

    python examples/python/enroll.py IDENTITY PHOTO [PHOTO...] [--name "Display Name"]
"""

import argparse
import sys

import grpc

from vargid_api import connect, pb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("identity")
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--name", default="")
    parser.add_argument("--gallery", default="")
    parser.add_argument("--address")
    args = parser.parse_args()

    stub = connect(args.address)
    images = [pb.Image(encoded=open(path, "rb").read()) for path in args.photos]
    try:
        reply = stub.Enroll(pb.EnrollRequest(identity_id=args.identity, images=images,
                                             display_name=args.name, gallery=args.gallery), timeout=30)
    except grpc.RpcError as e:  # e.g. INVALID_ARGUMENT "images[1]: no face found in the image"
        print(f"enroll: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    print(f"{reply.identity_id}: {len(reply.face_ids)} templates added, {reply.face_count} in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
