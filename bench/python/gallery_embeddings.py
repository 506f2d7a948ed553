"""Real face embeddings for `vargid-bench gallery`, from the shipped model.

Writes, under --out (outside the repository: embeddings are derived from the faces):
- `templates.f32`: the gallery's real templates, float32 rows of D, L2-normalised: every
  prepared training face (the three folders of ../shared/data/faces, one view each), then
  the first photo of every LFW person with two or more photos;
- `probes.f32`: real probes, each a different view of a face that has a template: every
  other LFW photo of those people, then the mirror image of the first `--mirror-probes`
  training faces;
- `distractors.f32`: the Gaussian the synthetic distractors are drawn from: the mean (D)
  and the lower Cholesky factor (D x D, row-major) of the real templates' covariance.
  `vargid-bench gallery` draws x = mean + L z, z ~ N(0, I), and normalises x;
- `meta.json`: the counts, the model and its sha256.

Runs ONNX Runtime on the CPU with the service's preprocessing (RGB 0..255 NCHW, no flip).
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training"))

from vargface import archive  # noqa: E402
from vargface.evaluate import OnnxEmbedder, identification_split, l2_normalise  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/vargfacenet.onnx"))
    parser.add_argument("--prepared", type=Path, required=True, help="vargface.prepare's zip")
    parser.add_argument("--lfw-crops", type=Path, required=True,
                        help="vargface.evaluate's --crops-cache (aligned LFW crops)")
    parser.add_argument("--mirror-probes", type=int, default=3000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    embed = OnnxEmbedder(args.model)
    prepared = archive.read(args.prepared).crops
    train = l2_normalise(embed(prepared))
    mirrored = l2_normalise(embed(np.ascontiguousarray(prepared[: args.mirror_probes, :, ::-1])))
    del prepared

    cache = np.load(args.lfw_crops)
    names = [str(n) for n in cache["key"][2:]]
    crops = cache["crops"]
    row = {n: i for i, n in enumerate(names)}
    split = identification_split(names)
    lfw_gallery = l2_normalise(embed(crops[[row[n] for n in split.gallery]]))
    lfw_mated = l2_normalise(embed(crops[[row[n] for n in split.mated]]))

    templates = np.concatenate([train, lfw_gallery]).astype(np.float32)
    probes = np.concatenate([lfw_mated, mirrored]).astype(np.float32)
    mean = templates.mean(axis=0)
    cholesky = np.linalg.cholesky(np.cov(templates, rowvar=False) + 1e-6 * np.eye(templates.shape[1]))

    args.out.mkdir(parents=True, exist_ok=True)
    templates.tofile(args.out / "templates.f32")
    probes.tofile(args.out / "probes.f32")
    np.concatenate([mean, cholesky.ravel()]).astype(np.float32).tofile(args.out / "distractors.f32")
    meta = {
        "model": str(args.model),
        "model_sha256": hashlib.sha256(args.model.read_bytes()).hexdigest(),
        "dim": int(templates.shape[1]),
        "templates": {"training_faces": len(train), "lfw_gallery": len(lfw_gallery)},
        "probes": {"lfw_mated": len(lfw_mated), "training_mirrored": len(mirrored)},
    }
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
