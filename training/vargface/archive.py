"""The prepared training set: aligned crops and teacher embeddings in one zip.

Layout of `prepared.zip` (kept under 64 MB for the 29k faces, so it can be copied
to a GPU machine with the code):
- `manifest.json`: {"crops": [{"source": relative path, "landmarks": [[x, y]*5],
  "score": detector score}], "skipped": [{"source", "reason"}], "settings": {...}};
- `crops/NNNNNN.webp`: the 112x112 aligned crop of manifest entry N (WebP, q75);
- `teacher.npy` (added by `vargface.teacher`): float16 (N, 2, D), the teacher's
  L2-normalised embedding of each crop and of its horizontal mirror ((N, 1, D), the
  crop alone, with `--clean-only`);
- `teacher.json`: which teacher (file, sha256) produced it.
"""

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CROP_QUALITY = 75


def encode_crop(crop: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(crop).save(out, "WEBP", quality=CROP_QUALITY, method=6)
    return out.getvalue()


def decode_crop(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@dataclass
class Prepared:
    crops: np.ndarray  # (N, 112, 112, 3) uint8
    manifest: dict
    teacher: np.ndarray | None  # (N, 2, D) float32, or (N, 1, D) clean only


def crop_name(index: int) -> str:
    return f"crops/{index:06d}.webp"


def read(path: str | Path, limit: int = 0) -> Prepared:
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        count = len(manifest["crops"]) if not limit else min(limit, len(manifest["crops"]))
        crops = np.stack([decode_crop(archive.read(crop_name(i))) for i in range(count)])
        teacher = None
        if "teacher.npy" in archive.namelist():
            teacher = np.load(io.BytesIO(archive.read("teacher.npy"))).astype(np.float32)[:count]
    return Prepared(crops, manifest, teacher)


def add_members(path: str | Path, members: dict[str, bytes]) -> None:
    """Adds or replaces members, rewriting the archive atomically."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as dst:
        for item in src.infolist():
            if item.filename not in members:
                dst.writestr(item, src.read(item.filename))
        for name, data in members.items():
            dst.writestr(name, data)
    tmp.replace(path)
