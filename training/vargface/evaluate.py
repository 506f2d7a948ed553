"""LFW View 2 verification accuracy and LFW 1:N identification of any ONNX face embedder.

    python -m vargface.evaluate --model models/vargfacenet.onnx \
        [--lfw ../shared/data/lfw] [--detector .deps/models/yunet_2023mar_fp32.onnx]
    python -m vargface.evaluate --embeddings service.json   # embeddings from elsewhere
    python -m vargface.evaluate --model models/vargfacenet.onnx --folder DIR   # 1:N only

`--folder DIR` takes a labelled folder (DIR/<person>/<photo>) instead of LFW's
pairs: every photo in it, 1:N only, with the split below. `vargid evaluate DIR`
measures the same folder through the running service with the same protocol.
`--shrink PX` measures small faces: every aligned crop is shrunk to PX x PX
(area-averaged) and enlarged back before embedding, as a face PX pixels wide in
a photo reaches the model; the faces, pairs and split stay the same.

Protocol (insightface's): every photo is detected (YuNet, largest face),
aligned to the 112x112 template (vargface.align), embedded with and without
a horizontal flip, the two embeddings summed and L2-normalised; a pair's score
is the cosine. Ten folds of pairs.txt: the threshold that maximises accuracy on
nine folds is applied to the tenth; mean and standard deviation over the ten.
TAR at FAR=1e-3 uses all 3,000 different-person pairs: the threshold is the
lowest score that at most 0.1% of them (3) exceed.

1:N identification (open set, NIST FRVT's terms) on the same photos: for every
person with two or more photos the lowest-numbered one is enrolled (the gallery:
1,559 people), each of their other photos is a mated probe (3,420), and every
photo of a person with one photo is a non-mated probe (2,722). A search scores a
probe against every gallery template (cosine); rank-1 is the share of mated
probes whose best candidate is the right person. FNIR at FPIR=f: the threshold is
the lowest score that at most a share f of the non-mated probes' best scores
exceed, and a mated probe is missed unless its best candidate is the right person
with a score above it.

The model is any ONNX embedder taking NCHW RGB 0..255 112x112 input (VarGFaceNet
and SFace both do). `--embeddings` scores a JSON object {relative image path:
embedding} instead, e.g. what `vargid-bench lfw` collected through the running
service, so both are measured by this same code.
"""

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .align import ARCFACE_TEMPLATE, CROP_SIZE, align
from .detect import DEFAULT_DETECTOR

DEFAULT_LFW = Path(os.environ.get("VARGID_LFW_DIR", "../shared/data/lfw"))
FAR_TARGET = 1e-3
FPIR_TARGETS = (0.1, 0.01)


@dataclass
class Pair:
    first: str  # path relative to images/
    second: str
    same: bool
    fold: int


def image_name(name: str, number: str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


def read_pairs(path: Path) -> list[Pair]:
    lines = path.read_text().split("\n")
    folds, per_fold = (int(v) for v in lines[0].split())
    pairs = []
    for index, line in enumerate(l for l in lines[1:] if l.strip()):
        parts = line.split()
        fold = index // (2 * per_fold)
        if len(parts) == 3:
            pairs.append(Pair(image_name(parts[0], parts[1]), image_name(parts[0], parts[2]), True, fold))
        else:
            pairs.append(Pair(image_name(parts[0], parts[1]), image_name(parts[2], parts[3]), False, fold))
    if len(pairs) != folds * per_fold * 2:
        raise ValueError(f"{path}: {len(pairs)} pairs, header says {folds}x{per_fold}x2")
    return pairs


def pair_images(pairs: list[Pair]) -> list[str]:
    """Every photo the pairs name, once, sorted."""
    return sorted({p.first for p in pairs} | {p.second for p in pairs})


def fallback_landmarks(height: int, width: int) -> np.ndarray:
    """Where no face is found: the template placed at the image centre.

    LFW photos are centred on the face; the service client uses the same rule.
    """
    return ARCFACE_TEMPLATE + np.array([(width - CROP_SIZE) / 2, (height - CROP_SIZE) / 2])


class OnnxEmbedder:
    def __init__(self, path: Path, batch: int = 64, threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's default, one per core
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        fixed = self.input.shape[0]
        self.batch = fixed if isinstance(fixed, int) and fixed > 0 else batch

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings (N, D) of uint8 crops (N, 112, 112, 3)."""
        out = []
        for start in range(0, len(crops), self.batch):
            chunk = crops[start:start + self.batch].transpose(0, 3, 1, 2).astype(np.float32)
            out.append(self.session.run(None, {self.input.name: chunk})[0])
        return np.concatenate(out)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def aligned_crops(names: list[str], images: Path, detector_path: Path) -> tuple[np.ndarray, int]:
    from .detect import YuNet, largest, load_rgb

    detector = YuNet(detector_path)
    crops = np.zeros((len(names), CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    fallbacks = 0
    for i, name in enumerate(names):
        rgb = load_rgb(images / name)
        face = largest(detector.detect(rgb))
        if face is None:
            fallbacks += 1
            marks = fallback_landmarks(*rgb.shape[:2])
        else:
            marks = face.landmarks
        crops[i] = align(rgb, marks)
    return crops, fallbacks


def shrunk_crops(crops: np.ndarray, side: int) -> np.ndarray:
    """Crops (N, 112, 112, 3) shrunk to side x side (area-averaged, as a camera sees a
    small face) and enlarged back (bilinear, as the aligner's warp does): how a model
    fares on faces of that size in a photo. side 0 or >= the crop's: unchanged."""
    from PIL import Image

    if side <= 0 or side >= crops.shape[1]:
        return crops
    size = (crops.shape[2], crops.shape[1])
    return np.stack([np.asarray(Image.fromarray(c).resize((side, side), Image.Resampling.BOX)
                                .resize(size, Image.Resampling.BILINEAR)) for c in crops])


def embed_with_flip(embedder: OnnxEmbedder, crops: np.ndarray) -> np.ndarray:
    return l2_normalise(l2_normalise(embedder(crops)) + l2_normalise(embedder(crops[:, :, ::-1])))


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold (score > t means same) with the highest accuracy."""
    order = np.sort(np.unique(scores))
    candidates = np.concatenate([[order[0] - 1e-6], (order[:-1] + order[1:]) / 2, [order[-1] + 1e-6]])
    accuracy = [np.mean((scores > t) == same) for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


def verification_metrics(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict:
    accuracies = []
    for fold in np.unique(folds):
        test = folds == fold
        train = ~test if np.any(~test) else test  # a one-fold smoke run tunes on itself
        threshold = best_threshold(scores[train], same[train])
        accuracies.append(float(np.mean((scores[test] > threshold) == same[test])))
    negatives = np.sort(scores[~same])[::-1]
    allowed = int(np.floor(FAR_TARGET * len(negatives)))
    far_threshold = float(negatives[allowed]) if allowed < len(negatives) else float(negatives[-1])
    return {
        "accuracy_mean": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "fold_accuracies": accuracies,
        "tar_at_far_1e-3": float(np.mean(scores[same] > far_threshold)),
        "far_threshold": far_threshold,
        "pairs": int(len(scores)),
    }


def evaluate(pairs: list[Pair], embeddings: dict[str, np.ndarray]) -> dict:
    missing = {p.first for p in pairs} | {p.second for p in pairs}
    missing -= embeddings.keys()
    if missing:
        raise ValueError(f"{len(missing)} images have no embedding, e.g. {sorted(missing)[0]}")
    a = l2_normalise(np.stack([embeddings[p.first] for p in pairs]))
    b = l2_normalise(np.stack([embeddings[p.second] for p in pairs]))
    scores = np.sum(a * b, axis=1)
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    return verification_metrics(scores, same, folds)


@dataclass
class IdentificationSplit:
    gallery: list[str]  # one photo per enrolled person
    mated: list[str]  # other photos of enrolled people
    non_mated: list[str]  # photos of people never enrolled


def person_of(name: str) -> str:
    return name.split("/")[0]


def identification_split(names: list[str]) -> IdentificationSplit:
    """The LFW 1:N protocol above, over these image names (`Person/Person_NNNN.jpg`)."""
    photos: dict[str, list[str]] = {}
    for name in sorted(names):
        photos.setdefault(person_of(name), []).append(name)
    split = IdentificationSplit([], [], [])
    for person in sorted(photos):
        own = photos[person]
        if len(own) >= 2:
            split.gallery.append(own[0])
            split.mated.extend(own[1:])
        else:
            split.non_mated.extend(own)
    return split


def best_candidates(probes: np.ndarray, gallery: np.ndarray, people: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each probe's best gallery candidate (its person) and score; rows L2-normalised."""
    scores = probes @ gallery.T
    top = np.argmax(scores, axis=1)
    return people[top], scores[np.arange(len(probes)), top]


def identification_metrics(embeddings: dict[str, np.ndarray], split: IdentificationSplit) -> dict:
    if not split.gallery or not split.mated:
        raise ValueError("1:N needs at least one person with two or more photos")
    gallery = l2_normalise(np.stack([embeddings[n] for n in split.gallery]))
    people = np.array([person_of(n) for n in split.gallery])

    def best(probes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if not probes:
            return np.zeros(0, dtype=people.dtype), np.zeros(0)
        return best_candidates(l2_normalise(np.stack([embeddings[n] for n in probes])), gallery, people)

    mated_top, mated_score = best(split.mated)
    correct = mated_top == np.array([person_of(n) for n in split.mated])
    _, non_mated_score = best(split.non_mated)
    result = {
        "rank1": float(np.mean(correct)),
        "gallery": len(split.gallery),
        "mated_probes": len(split.mated),
        "non_mated_probes": len(split.non_mated),
    }
    ordered = np.sort(non_mated_score)[::-1]
    for fpir in FPIR_TARGETS:
        if len(ordered) == 0:
            break
        allowed = int(np.floor(fpir * len(ordered)))
        threshold = float(ordered[allowed]) if allowed < len(ordered) else float(ordered[-1]) - 1e-6
        result[f"fnir_at_fpir_{fpir:g}"] = float(np.mean(~(correct & (mated_score > threshold))))
        result[f"fpir_{fpir:g}_threshold"] = threshold
    return result


def cached_aligned_crops(names: list[str], images: Path, detector: Path, cache: Path | None) -> tuple[np.ndarray, int]:
    """Detection and alignment dominate an evaluation on a CPU; with `cache` they run
    once per LFW copy and detector, and each further model only embeds."""
    key = np.array([str(images.resolve()), str(detector.resolve())] + names)
    if cache and cache.exists():
        stored = np.load(cache)
        if np.array_equal(stored["key"], key):
            return stored["crops"], int(stored["fallbacks"])
    crops, fallbacks = aligned_crops(names, images, detector)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(cache, "wb") as f:  # np.savez would append .npz to a plain path
            np.savez(f, key=key, crops=crops, fallbacks=fallbacks)
    return crops, fallbacks


PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def folder_names(root: Path) -> list[str]:
    """The photos of a labelled folder (root/<person>/<photo>) as `person/photo`, sorted."""
    return sorted(f"{person.name}/{photo.name}"
                  for person in root.iterdir() if person.is_dir()
                  for photo in person.iterdir()
                  if photo.is_file() and photo.suffix.lower() in PHOTO_SUFFIXES)


def evaluate_folder(model: Path, folder: Path, detector: Path, cache: Path | None,
                    shrink: int = 0, threads: int = 0) -> dict:
    names = folder_names(folder)
    if not names:
        raise ValueError(f"{folder}: no photos in sub-folders")
    embeddings, fallbacks = model_embeddings(model, folder, detector, names, cache, shrink, threads)
    return {
        "source": str(model),
        "folder": str(folder),
        "images": len(names),
        "no_face_fallbacks": fallbacks,
        "shrunk_to_px": shrink or None,
        "identification": identification_metrics(embeddings, identification_split(names)),
    }


def print_identification(ident: dict) -> None:
    fnir = ", ".join(f"FNIR {100 * ident[f'fnir_at_fpir_{f:g}']:.2f}% at FPIR={f:g}"
                     for f in FPIR_TARGETS if f"fnir_at_fpir_{f:g}" in ident)
    print(f"  1:N: {ident['gallery']} enrolled, {ident['mated_probes']} mated and "
          f"{ident['non_mated_probes']} non-mated probes: rank-1 {100 * ident['rank1']:.2f}%, {fnir}")


def model_embeddings(model: Path, images: Path, detector: Path, names: list[str],
                     cache: Path | None = None, shrink: int = 0, threads: int = 0) -> tuple[dict, int]:
    """{name: flip-summed embedding} of the photos `images/<name>`, and how many had no face."""
    crops, fallbacks = cached_aligned_crops(names, images, detector, cache)
    crops = shrunk_crops(crops, shrink)
    vectors = embed_with_flip(OnnxEmbedder(model, threads=threads), crops)
    return dict(zip(names, vectors)), fallbacks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LFW View 2 accuracy of an ONNX face embedder.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="ONNX embedder (NCHW RGB 0..255 112x112)")
    source.add_argument("--embeddings", type=Path, help="JSON {image path: embedding}")
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW dir with images/ and pairs.txt")
    parser.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR)
    parser.add_argument("--limit-folds", type=int, default=0, help="only the first N folds (smoke runs)")
    parser.add_argument("--pairs-per-fold", type=int, default=0,
                        help="only the first N same and N different pairs of each fold (smoke runs)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--crops-cache", type=Path,
                        help="keep the aligned LFW crops in this file and reuse them (not committed: LFW pixels)")
    parser.add_argument("--dump-embeddings", type=Path, help="write the model's embeddings as JSON")
    parser.add_argument("--shrink", type=int, default=0, metavar="PX",
                        help="evaluate on the aligned crops shrunk to PX x PX and enlarged back: "
                             "small, low-resolution faces (0: full 112 px)")
    parser.add_argument("--threads", type=int, default=0,
                        help="ONNX Runtime threads (0: one per core); 1 beside a training run on the other core")
    parser.add_argument("--folder", type=Path,
                        help="1:N only, on this labelled folder (DIR/<person>/<photo>) instead of LFW pairs")
    args = parser.parse_args(argv)

    if args.shrink and not args.model:
        parser.error("--shrink needs --model: embeddings from elsewhere were made from unshrunk faces")
    if args.folder:
        if not args.model:
            parser.error("--folder needs --model")
        result = evaluate_folder(args.model, args.folder, args.detector, args.crops_cache, args.shrink,
                                 args.threads)
        print(f"{result['source']}: {args.folder}, {result['images']} images "
              f"({result['no_face_fallbacks']} without a detected face, centre fallback)")
        print_identification(result["identification"])
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0

    pairs = read_pairs(args.lfw / "pairs.txt")
    if args.limit_folds:
        pairs = [p for p in pairs if p.fold < args.limit_folds]
    if args.pairs_per_fold:
        taken: dict[tuple[int, bool], int] = {}
        kept = []
        for p in pairs:
            key = (p.fold, p.same)
            if taken.get(key, 0) < args.pairs_per_fold:
                taken[key] = taken.get(key, 0) + 1
                kept.append(p)
        pairs = kept
    names = pair_images(pairs)
    fallbacks = 0
    if args.model:
        embeddings, fallbacks = model_embeddings(args.model, args.lfw / "images", args.detector, names,
                                                 args.crops_cache, args.shrink, args.threads)
        if args.dump_embeddings:
            args.dump_embeddings.write_text(json.dumps({k: v.tolist() for k, v in embeddings.items()}))
    else:
        raw = json.loads(args.embeddings.read_text())
        embeddings = {k: np.asarray(v, dtype=np.float64) for k, v in raw.items()}
    result = evaluate(pairs, embeddings)
    split = identification_split(sorted(set(names) & embeddings.keys()))
    result["identification"] = identification_metrics(embeddings, split) if split.mated else None
    result.update(source=str(args.model or args.embeddings), images=len(names), no_face_fallbacks=fallbacks,
                  shrunk_to_px=args.shrink or None)
    shrunk = f", faces shrunk to {args.shrink} px" if args.shrink else ""
    print(f"{result['source']}: LFW {result['pairs']} pairs, {len(names)} images "
          f"({fallbacks} without a detected face, centre fallback{shrunk})")
    print(f"  10-fold accuracy {100 * result['accuracy_mean']:.2f}% "
          f"+- {100 * result['accuracy_std']:.2f}")
    print(f"  TAR {100 * result['tar_at_far_1e-3']:.2f}% at FAR=1e-3 "
          f"(threshold {result['far_threshold']:.4f})")
    ident = result["identification"]
    if ident is None:
        print("  1:N: no person with two or more photos in this subset")
    else:
        print_identification(ident)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
