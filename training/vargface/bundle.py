"""A generation trained on a GPU machine from one self-contained bundle.

    # here (CPU): pack code, crops, teacher embeddings, the teacher, the start
    python -m vargface.bundle pack --prepared runs/prepared42k.zip \
        --init models/vargfacenet.onnx --out runs/gpu-bundle.zip
    # there (one NVIDIA GPU; torch, onnx, numpy, pillow installed): unpack and train
    unzip -q gpu-bundle.zip -d bundle && cd bundle && sh run.sh OUT [distill options]
    # here again: join the returned weight parts and export
    python -m vargface.bundle join --weights OUT/weights --out runs/gen6/student.pt
    python -m vargface.export --weights runs/gen6/student.pt --out runs/gen6/student.onnx

The bundle is at most --max-mib (64) MiB: the crops are re-encoded as WebP at the
highest quality that fits beside the rest (estimated on a sample, then checked).
It holds the teacher converted to a float16 PyTorch module (SFace is Apache-2.0;
the bundle is never committed), so the GPU run can teach consistently
(--teacher-online). `train` runs vargface.distill and then splits the student's
weights into parts of at most 16 MiB with their SHA-256, which `join` checks.
`training/tests/test_pipeline_smoke.py` runs pack, the first steps of train on the
CPU, and join.
"""

import argparse
import hashlib
import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import torch

from .archive import decode_crop

PART_BYTES = 16 * 2**20
CODE = Path(__file__).resolve().parent
RUN_SH = """#!/bin/sh
# Trains one generation on this machine's GPU: sh run.sh OUT [vargface.distill options]
set -eu
out="$1"; shift
PYTHONPATH="$(dirname "$0")" exec python3 -m vargface.bundle train --bundle "$(dirname "$0")" --out "$out" "$@"
"""


def _encode(crop, quality: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, "WEBP", quality=quality, method=4)
    return buffer.getvalue()


def pack(prepared: Path, init: Path, teacher: Path, out: Path, max_mib: float) -> dict:
    from .teacher_torch import chain_from_onnx, save_teacher
    from .weights import model_from_weights

    staging = out.with_suffix(".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    torch.save({"model": model_from_weights(init).state_dict()}, staging / "init.pt")
    save_teacher(chain_from_onnx(teacher), staging / "teacher.pt")
    code = {p.name: p.read_bytes() for p in sorted(CODE.glob("*.py"))}
    with zipfile.ZipFile(prepared) as src:
        names = src.namelist()
        manifest = src.read("manifest.json")
        extra = {n: src.read(n) for n in ("teacher.npy", "teacher.json") if n in names}
        crops = sorted(n for n in names if n.startswith("crops/"))
        fixed = sum(len(b) for b in code.values()) + len(manifest) + sum(len(b) for b in extra.values())
        fixed += sum(f.stat().st_size for f in staging.iterdir()) + 64 * 1024  # zip headers, run.sh
        budget = max_mib * 2**20 - fixed
        sample = crops[:: max(1, len(crops) // 300)]
        quality = 80
        while quality > 10:
            size = sum(len(_encode(decode_crop(src.read(n)), quality)) for n in sample)
            if size * len(crops) / len(sample) * 1.03 <= budget:
                break
            quality -= 5
        with zipfile.ZipFile(staging / "prepared.zip", "w", zipfile.ZIP_STORED) as dst:
            dst.writestr("manifest.json", manifest)
            for name, data in extra.items():
                dst.writestr(name, data)
            for name in crops:
                dst.writestr(name, _encode(decode_crop(src.read(name)), quality))
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as bundle:
        for name, data in code.items():
            bundle.writestr(f"vargface/{name}", data)
        for path in sorted(staging.iterdir()):
            bundle.write(path, path.name)
        bundle.writestr("run.sh", RUN_SH)
    shutil.rmtree(staging)
    mib = out.stat().st_size / 2**20
    if mib > max_mib:
        out.unlink()
        raise SystemExit(f"bundle: {mib:.1f} MiB is over --max-mib {max_mib:g}; lower the crop quality")
    return {"crops": len(crops), "webp_quality": quality, "mib": round(mib, 1)}


def split_weights(student: Path, parts_dir: Path) -> list[dict]:
    """Cuts `student` into files of at most PART_BYTES, listed with their SHA-256."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    data = student.read_bytes()
    parts = []
    for i, start in enumerate(range(0, len(data), PART_BYTES)):
        chunk = data[start:start + PART_BYTES]
        name = f"part-{i:03d}.bin"
        (parts_dir / name).write_bytes(chunk)
        parts.append({"file": name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
    (parts_dir / "parts.json").write_text(json.dumps({"source": student.name, "parts": parts}, indent=2))
    return parts


def join_weights(parts_dir: Path, out: Path) -> None:
    listing = json.loads((parts_dir / "parts.json").read_text())
    chunks = []
    for part in listing["parts"]:
        chunk = (parts_dir / part["file"]).read_bytes()
        if hashlib.sha256(chunk).hexdigest() != part["sha256"]:
            raise SystemExit(f"bundle: {part['file']} does not match its SHA-256: copy it again")
        chunks.append(chunk)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"".join(chunks))


def train(bundle: Path, out: Path, distill_args: list[str]) -> int:
    from . import distill

    args = ["--prepared", str(bundle / "prepared.zip"), "--init", str(bundle / "init.pt"),
            "--teacher-online", str(bundle / "teacher.pt"), "--out", str(out)] + distill_args
    code = distill.main(args)
    split_weights(out / "student.pt", out / "weights")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="write the bundle")
    p.add_argument("--prepared", type=Path, required=True, help="archive from prepare + teacher")
    p.add_argument("--init", type=Path, required=True, help="the generation to start from (.onnx or .pt)")
    p.add_argument("--teacher", type=Path, default=Path(".deps/models/sface_2021dec_fp32.onnx"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-mib", type=float, default=64.0)
    t = sub.add_parser("train", help="train one generation from an unpacked bundle (on the GPU machine)")
    t.add_argument("--bundle", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    j = sub.add_parser("join", help="join the returned weight parts into one .pt")
    j.add_argument("--weights", type=Path, required=True)
    j.add_argument("--out", type=Path, required=True)
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "pack":
        print(f"bundle: {pack(args.prepared, args.init, args.teacher, args.out, args.max_mib)} -> {args.out}")
        return 0
    if args.command == "train":
        return train(args.bundle, args.out, rest)
    join_weights(args.weights, args.out)
    print(f"bundle: joined {args.weights} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
