"""Writes the seed corpus in fuzz/seeds/ (committed; rerun only to change it).

    .venv/bin/python fuzz/make_seeds.py

Small valid inputs of each kind, so that the fuzzer starts inside every decoder
rather than having to discover JPEG markers or protobuf field numbers by itself.
Requests are encoded by hand (field numbers from proto/vargid/v1/face_service.proto)
to need no protobuf package.
"""

import io
import struct
from pathlib import Path

from PIL import Image

SEEDS = Path(__file__).parent / "seeds"


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, value) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, float):
        return varint(number << 3 | 5) + struct.pack("<f", value)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def picture(size, fmt: str, **options) -> bytes:
    img = Image.new("RGB", size)
    for x in range(size[0]):
        for y in range(size[1]):
            img.putpixel((x, y), ((x * 7) % 256, (y * 11) % 256, ((x + y) * 5) % 256))
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def write(target: str, name: str, data: bytes) -> None:
    (SEEDS / target).mkdir(parents=True, exist_ok=True)
    (SEEDS / target / name).write_bytes(data)


def main() -> None:
    # image_input: mode byte (1: detector input too), 10 landmark bytes, the file.
    landmarks = bytes([90, 100, 165, 100, 128, 135, 100, 170, 155, 170])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise
    files = {
        "crop.jpg": picture((112, 112), "JPEG", quality=20),
        "small.png": picture((24, 16), "PNG"),
        "small.webp": picture((24, 16), "WEBP", quality=50),
        "lossless.webp": picture((8, 8), "WEBP", lossless=True),
        "rotated.jpg": picture((20, 12), "JPEG", quality=50, exif=exif.tobytes()),
        "progressive.jpg": picture((16, 16), "JPEG", quality=50, progressive=True),
    }
    for name, data in files.items():
        write("image_input", name, bytes([1]) + landmarks + data)

    # request_validation: RPC byte (see the target), then the request.
    points = b"".join(field(1, field(1, float(x)) + field(2, float(y)))
                      for x, y in [(38.3, 51.7), (73.5, 51.5), (56.0, 71.7), (41.5, 92.4), (70.7, 92.2)])
    aligned = field(1, b"\xff\xd8\xff\xd9") + field(3, 1)
    raw = field(2, field(1, 2) + field(2, 1) + field(3, b"\x00" * 6)) + field(3, 3) + field(4, points)
    requests = {
        "enroll": (0, field(1, "alice") + field(2, aligned) + field(2, raw) + field(4, field(1, "k") + field(2, "v"))),
        "identify": (1, field(1, aligned) + field(2, 5) + field(3, 0.4) + field(4, "default")),
        "verify_identity": (2, field(1, raw) + field(2, "bob") + field(4, 0.5)),
        "verify_image": (2, field(1, aligned) + field(3, raw)),
        "embed": (3, field(1, raw) + field(1, aligned)),
        "delete": (4, field(1, "alice") + field(2, "g")),
        "list": (5, field(1, 10) + field(2, "616c696365")),
        "create_gallery": (6, field(1, "g") + field(2, "flat") + field(3, 0.36)),
        "export": (7, field(1, "g") + field(2, 2) + field(3, "626f62")),
        "import": (8, field(1, "g") + field(3, field(1, field(1, "carol") + field(3, field(1, "k") + field(2, "v")))
                                             + field(2, field(1, 7) + field(2, struct.pack("<128f", *[0.1] * 128))))),
        "get": (9, field(1, "alice")),
    }
    for name, (rpc, body) in requests.items():
        write("request_validation", name, bytes([rpc]) + body)

    # gallery_record: selector byte (even: embedding blob, odd: metadata JSON).
    write("gallery_record", "embedding", bytes([0]) + struct.pack("<4f", 0.5, -0.25, 1e-3, 0.0))
    write("gallery_record", "metadata", bytes([1]) + b'{"team":"blue","note":"caf\\u00e9 \xe2\x98\x95"}')
    write("gallery_record", "empty_metadata", bytes([1]) + b"{}")


if __name__ == "__main__":
    main()
