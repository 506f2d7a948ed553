"""PyTorch embedding of a fixed input, for the Rust ONNX Runtime test to match.

    python -m vargface.reference --onnx models/vargfacenet.onnx \
        --out crates/model/tests/data/reference_embedding.json

The weights come out of the ONNX file itself (vargface.onnx_io), so the Rust
side runs the very same weights through a different runtime.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .model import INPUT_SIZE
from .weights import model_from_weights

INPUT_DESCRIPTION = (
    f"pattern: ((c*37 + y*11 + x*7) % 256) for NCHW 1x3x{INPUT_SIZE}x{INPUT_SIZE}, "
    "float32, RGB 0..255"
)


def reference_input() -> torch.Tensor:
    """Pixel (c, y, x) = (c*37 + y*11 + x*7) % 256, batch 1, float32."""
    c, y, x = np.meshgrid(
        np.arange(3), np.arange(INPUT_SIZE), np.arange(INPUT_SIZE), indexing="ij"
    )
    pattern = ((c * 37 + y * 11 + x * 7) % 256).astype(np.float32)
    return torch.from_numpy(pattern[np.newaxis])


def reference_embedding(model: nn.Module) -> np.ndarray:
    """The raw embedding of `reference_input()`, shape (emb,), float32."""
    model.eval()
    with torch.no_grad():
        return model(reference_input())[0].numpy()


def reference_record(onnx_path: str | Path) -> dict:
    raw = reference_embedding(model_from_weights(onnx_path)).astype(np.float64)
    return {
        "model": str(onnx_path),
        "input": INPUT_DESCRIPTION,
        "embedding_raw": raw.tolist(),
        "embedding_normalized": (raw / np.linalg.norm(raw)).tolist(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vargface.reference", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--onnx", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)

    record = reference_record(args.onnx)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    raw = np.array(record["embedding_raw"])
    print(
        f"wrote {args.out}: {raw.size}-d embedding, norm {np.linalg.norm(raw):.6f}, "
        f"first values {np.round(raw[:4], 6).tolist()}"
    )


if __name__ == "__main__":
    main()
