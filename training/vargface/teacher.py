"""Cache the teacher's embeddings of every prepared crop (and of its mirror).

    python -m vargface.teacher --prepared prepared.zip \
        [--teacher .deps/models/sface_2021dec_fp32.onnx]

Adds `teacher.npy` (float16, (N, 2, D): L2-normalised embeddings of the crop and
of its horizontal mirror) and `teacher.json` to the archive. The crops are the
decoded WebP crops the student will see, so teacher and student agree on input.
"""

import argparse
import hashlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from .archive import add_members, read
from .evaluate import OnnxEmbedder, l2_normalise

DEFAULT_TEACHER = Path(".deps/models/sface_2021dec_fp32.onnx")


def teacher_embeddings(teacher: OnnxEmbedder, crops: np.ndarray, chunk: int = 512) -> np.ndarray:
    out = []
    for start in range(0, len(crops), chunk):
        part = crops[start:start + chunk]
        out.append(np.stack([l2_normalise(teacher(part)), l2_normalise(teacher(part[:, :, ::-1]))], axis=1))
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cache teacher embeddings in a prepared archive.")
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--teacher", type=Path, default=DEFAULT_TEACHER)
    args = parser.parse_args(argv)
    started = time.time()
    data = read(args.prepared)
    embeddings = teacher_embeddings(OnnxEmbedder(args.teacher), data.crops)
    buffer = io.BytesIO()
    np.save(buffer, embeddings.astype(np.float16))
    info = {"teacher": args.teacher.name,
            "sha256": hashlib.sha256(args.teacher.read_bytes()).hexdigest(),
            "shape": list(embeddings.shape)}
    add_members(args.prepared, {"teacher.npy": buffer.getvalue(), "teacher.json": json.dumps(info)})
    print(f"teacher: {embeddings.shape[0]} crops x 2 views x {embeddings.shape[2]}-d "
          f"in {time.time() - started:.0f} s -> {args.prepared}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
