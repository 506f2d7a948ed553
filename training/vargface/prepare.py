"""Detect, align and pack the distillation faces.

    python -m vargface.prepare --faces ../shared/data/faces --out prepared.zip [--limit N]

Every JPEG under --faces (recursively, sorted) is padded by reflection (the
UTKFace and CelebA crops are tight: a face touching the border is missed by the
detector, and black padding would leave borders LFW photos do not have), run
through YuNet, and the largest face aligned to the 112x112 template exactly as
the service does (vargface.align). Images without a usable face are listed in the
manifest with the reason. The crops and the manifest go into one archive (see
vargface.archive); `python -m vargface.teacher` adds the teacher's embeddings.
"""

import argparse
import json
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from .align import align
from .archive import crop_name, encode_crop
from .detect import DEFAULT_DETECTOR, YuNet, largest, load_rgb

DEFAULT_FACES = Path(os.environ.get("VARGID_FACES_DIR", "../shared/data/faces"))
PAD_FRACTION = 0.3
MIN_SCORE = 0.7
MIN_EYE_DISTANCE = 12.0


def pad_reflect(rgb: np.ndarray, fraction: float = PAD_FRACTION) -> tuple[np.ndarray, int]:
    pad = int(round(fraction * max(rgb.shape[:2])))
    pad = min(pad, rgb.shape[0] - 1, rgb.shape[1] - 1)
    return np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="reflect"), pad


def find_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Detect, align and pack distillation faces.")
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES)
    parser.add_argument("--out", type=Path, required=True, help="archive to write (.zip)")
    parser.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR)
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (smoke runs)")
    args = parser.parse_args(argv)

    images = find_images(args.faces)
    if args.limit:
        # Spread a subset over the sources instead of taking one directory's head.
        images = images[:: max(1, len(images) // args.limit)][: args.limit]
    detector = YuNet(args.detector)
    crops, skipped = [], []
    started = time.time()
    tmp = args.out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for i, path in enumerate(images):
            source = str(path.relative_to(args.faces))
            try:
                rgb = load_rgb(path)
            except OSError as e:
                skipped.append({"source": source, "reason": f"unreadable: {e}"})
                continue
            padded, pad = pad_reflect(rgb)
            face = largest(detector.detect(padded))
            if face is None:
                skipped.append({"source": source, "reason": "no face detected"})
                continue
            eyes = float(np.linalg.norm(face.landmarks[0] - face.landmarks[1]))
            if face.score < MIN_SCORE or eyes < MIN_EYE_DISTANCE:
                skipped.append({"source": source,
                                "reason": f"low quality: score {face.score:.2f}, eye distance {eyes:.1f} px"})
                continue
            archive.writestr(crop_name(len(crops)), encode_crop(align(padded, face.landmarks)))
            crops.append({"source": source,
                          "landmarks": (face.landmarks - pad).round(2).tolist(),
                          "score": round(face.score, 4)})
            if (i + 1) % 1000 == 0:
                rate = (i + 1) / (time.time() - started)
                print(f"prepare: {i + 1}/{len(images)} images, {rate:.1f}/s", flush=True)
        manifest = {"crops": crops, "skipped": skipped,
                    "settings": {"pad_fraction": PAD_FRACTION, "pad_mode": "reflect",
                                 "min_score": MIN_SCORE, "min_eye_distance": MIN_EYE_DISTANCE,
                                 "faces_dir": str(args.faces)}}
        archive.writestr("manifest.json", json.dumps(manifest))
    tmp.replace(args.out)
    size = args.out.stat().st_size / 2**20
    print(f"prepare: {len(crops)} crops, {len(skipped)} skipped, {size:.1f} MiB in {args.out} "
          f"({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
