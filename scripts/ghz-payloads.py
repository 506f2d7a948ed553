#!/usr/bin/env python3
"""Writes the request payloads of the ghz configurations in deploy/ghz/ from real LFW
photos (never copied into the repository: the payloads go to the git-ignored
deploy/ghz/payloads/ and are rebuilt at every load test).

For the first N people of LFW (sorted by name) with at least two photos:
  enroll.json    one EnrollRequest per person: identity_id = the LFW name, the first
                 photo;
  identify.json  one IdentifyRequest per person: the second photo, top_k 5;
  embed.json     one EmbedRequest per person: the second photo.
ghz sends the messages of such an array in turn (round robin), so a load uses N
different faces.

--location says how the server finds the face:
  aligned  a 112x112 crop around the photo's centre (LFW's deep-funneled photos keep
           the face roughly centred), JPEG, FACE_LOCATION_ALIGNED: measures the
           embedding path alone (the same crop as tests/tests/common/mod.rs);
  detect   the whole photo as LFW ships it (250x250 JPEG), FACE_LOCATION_DETECT:
           detection and alignment in the server, as a client would send it.

Bytes are base64 in ghz's JSON (protobuf's JSON mapping), enums by name. Needs
Pillow (the project's .venv has it).
"""

import argparse
import base64
import io
import json
import os
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def lfw_images() -> Path:
    base = os.environ.get("VARGID_LFW_DIR")
    root = Path(base) if base else ROOT.parent / "shared" / "data" / "lfw"
    return root / "images"


def people(images: Path, count: int) -> list[tuple[str, list[Path]]]:
    chosen = []
    for person in sorted(p for p in images.iterdir() if p.is_dir()):
        photos = sorted(person.glob("*.jpg"))
        if len(photos) >= 2:
            chosen.append((person.name, photos))
            if len(chosen) == count:
                return chosen
    sys.exit(f"ghz-payloads: only {len(chosen)} people with two photos in {images}")


def centre_crop_jpeg(path: Path) -> bytes:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    side = min(w, h) * 2 // 5
    left, top = (w - side) // 2, (h - side) // 2
    crop = img.crop((left, top, left + side, top + side)).resize((112, 112), Image.BILINEAR)
    out = io.BytesIO()
    crop.save(out, format="JPEG", quality=95)
    return out.getvalue()


def image(path: Path, location: str) -> dict:
    if location == "aligned":
        data, mode = centre_crop_jpeg(path), "FACE_LOCATION_ALIGNED"
    else:
        data, mode = path.read_bytes(), "FACE_LOCATION_DETECT"
    return {"encoded": base64.b64encode(data).decode("ascii"), "location": mode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--location", choices=["aligned", "detect"], default="aligned")
    parser.add_argument("--people", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "deploy" / "ghz" / "payloads")
    args = parser.parse_args()

    chosen = people(lfw_images(), args.people)
    enroll, identify, embed = [], [], []
    for name, photos in chosen:
        enroll.append({
            "identity_id": name,
            "display_name": name.replace("_", " "),
            "images": [image(photos[0], args.location)],
            "metadata": {"source": "lfw", "photo": photos[0].name},
            # LFW photos can show several people; the subject is the largest face.
            "use_largest_face": True,
        })
        probe = image(photos[1], args.location)
        identify.append({"image": probe, "top_k": 5})
        embed.append({"images": [probe]})

    args.out.mkdir(parents=True, exist_ok=True)
    for name, messages in [("enroll", enroll), ("identify", identify), ("embed", embed)]:
        (args.out / f"{name}.json").write_text(json.dumps(messages) + "\n")
    sizes = [len(base64.b64decode(m["image"]["encoded"])) for m in identify]
    print(f"ghz-payloads: {len(chosen)} people, location {args.location}, "
          f"probe JPEGs {min(sizes)}-{max(sizes)} bytes, in {args.out}")


if __name__ == "__main__":
    main()
