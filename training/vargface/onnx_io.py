"""Read VarGFaceNet weights back out of an exported ONNX file.

The export keeps every state_dict entry as an ONNX initializer under its
PyTorch name (TorchScript exporter, no constant folding, BN left unfused), so
generation k+1 of the recursive distillation can start from generation k's
committed ONNX file.
"""

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

# BatchNorm's step counter is not exported; it does not affect inference
# (momentum is fixed), so a loaded module keeps its own value.
OPTIONAL_SUFFIX = "num_batches_tracked"


class OnnxWeightsError(ValueError):
    """The ONNX file's tensors do not match the module's state_dict."""


def read_onnx_tensors(path: str | Path) -> dict[str, np.ndarray]:
    """Initializers by name, plus the names the exporter aliased.

    The TorchScript exporter stores equal initializers once and recreates the
    other names as `Identity` nodes (e.g. all PReLU slopes of one width still at
    0.25), so an Identity whose input is a known tensor is that tensor again.
    """
    graph = onnx.load(str(path)).graph
    tensors = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]]
    return tensors


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def load_onnx_weights(module: nn.Module, path: str | Path) -> None:
    """Restore every state_dict entry of `module` from the ONNX file at `path`.

    Raises OnnxWeightsError naming the tensors that are missing from the file,
    present in the file but unknown to the module, or of the wrong shape.
    """
    tensors = read_onnx_tensors(path)
    state = module.state_dict()

    missing = sorted(k for k in state if k not in tensors and not k.endswith(OPTIONAL_SUFFIX))
    extra = sorted(k for k in tensors if k not in state)
    mismatched = sorted(
        f"{k} (file {tuple(tensors[k].shape)}, module {tuple(state[k].shape)})"
        for k in state
        if k in tensors and tuple(tensors[k].shape) != tuple(state[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing from the file: {_listing(missing)}")
    if extra:
        problems.append(f"not in the module: {_listing(extra)}")
    if mismatched:
        problems.append(f"shape mismatch: {_listing(mismatched)}")
    if problems:
        raise OnnxWeightsError(
            f"{path} does not fit {type(module).__name__}: " + "; ".join(problems)
        )

    restored = {
        name: torch.from_numpy(np.array(tensors[name])).to(current.dtype)
        if name in tensors
        else current
        for name, current in state.items()
    }
    module.load_state_dict(restored, strict=True)
