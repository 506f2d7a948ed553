"""Where a student loses LFW 1:N searches that its teacher wins: rank-1 of both by
quintile of a per-search property, to tell a recipe what to aim at.

    python -m vargface.gap --model models/vargfacenet.onnx \
        --teacher .deps/models/sface_2021dec_fp32.onnx --crops-cache runs/lfw-crops.npz

One embedding per crop, no flip (the service's default), on vargface.evaluate's
aligned LFW crops and its 1:N split. A search's properties, each the lower of the
probe's and its enrolled photo's value: the student-teacher cosine of the photo,
colour (mean per-pixel standard deviation across channels: 0 is greyscale),
sharpness (mean absolute Laplacian) and left-right asymmetry (mean absolute
difference from the mirror image; a frontal face is low).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from .detect import DEFAULT_DETECTOR
from .evaluate import (DEFAULT_LFW, OnnxEmbedder, best_candidates, cached_aligned_crops,
                       identification_split, l2_normalise, pair_images, person_of, read_pairs)


def photo_properties(crops: np.ndarray) -> dict[str, np.ndarray]:
    """Per-crop image properties of uint8 crops (N, H, W, 3)."""
    x = crops.astype(np.float32)
    grey = x.mean(axis=3)
    centre = grey[:, 1:-1, 1:-1]
    laplacian = 4 * centre - grey[:, :-2, 1:-1] - grey[:, 2:, 1:-1] - grey[:, 1:-1, :-2] - grey[:, 1:-1, 2:]
    return {
        "colour": x.std(axis=3).mean(axis=(1, 2)),
        "sharpness": np.abs(laplacian).mean(axis=(1, 2)),
        "asymmetry": np.abs(grey - grey[:, :, ::-1]).mean(axis=(1, 2)),
    }


def by_quintile(values: np.ndarray, hits: dict[str, np.ndarray]) -> list[dict]:
    """Rank-1 of each model within each fifth of the searches, ordered by `values`."""
    edges = np.quantile(values, [0.2, 0.4, 0.6, 0.8])
    bins = np.digitize(values, edges)
    rows = []
    for b in range(5):
        inside = bins == b
        rows.append({"from": float(values[inside].min()) if inside.any() else None,
                     "searches": int(inside.sum()),
                     **{name: float(h[inside].mean()) if inside.any() else None for name, h in hits.items()}})
    return rows


def gap(names: list[str], crops: np.ndarray, student: np.ndarray, teacher: np.ndarray) -> dict:
    """Rank-1 of student and teacher overall and by quintile of each search property."""
    index = {n: i for i, n in enumerate(names)}
    split = identification_split(names)
    gallery = np.array([index[n] for n in split.gallery])
    probes = np.array([index[n] for n in split.mated])
    people = np.array([person_of(n) for n in split.gallery])
    truth = np.array([person_of(n) for n in split.mated])
    enrolled = {person_of(n): index[n] for n in split.gallery}
    own = np.array([enrolled[t] for t in truth])
    hits = {name: best_candidates(e[probes], e[gallery], people)[0] == truth
            for name, e in (("student", student), ("teacher", teacher))}
    per_photo = {"student-teacher cosine": np.sum(student * teacher, axis=1), **photo_properties(crops)}
    return {
        "searches": len(probes),
        "rank1": {name: float(h.mean()) for name, h in hits.items()},
        "student_wrong_teacher_right": int(np.sum(hits["teacher"] & ~hits["student"])),
        "by_quintile": {name: by_quintile(np.minimum(v[probes], v[own]), hits) for name, v in per_photo.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--teacher", type=Path, default=Path(".deps/models/sface_2021dec_fp32.onnx"))
    p.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    p.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR)
    p.add_argument("--crops-cache", type=Path)
    args = p.parse_args(argv)
    names = pair_images(read_pairs(args.lfw / "pairs.txt"))
    crops, _ = cached_aligned_crops(names, args.lfw / "images", args.detector, args.crops_cache)
    student = l2_normalise(OnnxEmbedder(args.model)(crops))
    teacher = l2_normalise(OnnxEmbedder(args.teacher)(crops))
    result = gap(names, crops, student, teacher)
    print(f"{args.model} against {args.teacher.name}, {result['searches']} mated LFW 1:N searches, "
          f"no flip: rank-1 {100 * result['rank1']['student']:.2f}% against "
          f"{100 * result['rank1']['teacher']:.2f}%; {result['student_wrong_teacher_right']} "
          "lost by the student only")
    for name, rows in result["by_quintile"].items():
        print(f"\n| {name} (lower of probe and enrolled photo), from | searches | student rank-1 | teacher rank-1 |")
        print("|---:|---:|---:|---:|")
        for r in (r for r in rows if r["searches"]):
            print(f"| {r['from']:.3g} | {r['searches']} | {100 * r['student']:.1f}% | {100 * r['teacher']:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
