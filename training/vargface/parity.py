"""ONNX Runtime (CPU) against PyTorch on the same random 0..255 inputs."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from .model import INPUT_SIZE

MAX_ABS_DIFF = 1e-4  # a result passes below this ...
MIN_COSINE = 0.99999  # ... and above this
BATCH_SIZES = (1, 7, 32)


@dataclass(frozen=True)
class ParityResult:
    batch_size: int
    max_abs_diff: float
    min_cosine: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff < MAX_ABS_DIFF and self.min_cosine > MIN_COSINE

    def __str__(self) -> str:
        verdict = "ok" if self.passed else "FAIL"
        return (
            f"batch {self.batch_size:>2}: max |ORT - torch| = {self.max_abs_diff:.3e}, "
            f"min cosine = 1 - {1 - self.min_cosine:.1e}  {verdict}"
        )


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def check_parity(
    model: nn.Module,
    onnx_path: str | Path,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    seed: int = 12345,
) -> list[ParityResult]:
    """Run each batch through the eval-mode model and the ONNX file."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    results = []
    for batch_size in batch_sizes:
        images = torch.rand(batch_size, 3, INPUT_SIZE, INPUT_SIZE, generator=generator) * 255
        with torch.no_grad():
            expected = model(images).numpy()
        (actual,) = session.run(None, {input_name: images.numpy()})
        results.append(
            ParityResult(
                batch_size=batch_size,
                max_abs_diff=float(np.abs(actual - expected).max()),
                min_cosine=float(_cosines(actual, expected).min()),
            )
        )
    return results
