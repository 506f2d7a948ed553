"""The teacher as a PyTorch module, so it can run on the student's own augmented
batch inside the training loop (consistent teaching) on the same device and in the
same precision as the student.

    teacher = chain_from_onnx(Path(".deps/models/sface_2021dec_fp32.onnx"))
    target = teacher(x)  # x: float (N, 3, 112, 112), RGB 0..255, like the ONNX input

SFace's graph is one chain (Sub, Mul, then Conv/BatchNormalization/PRelu blocks,
Dropout, Flatten, Gemm, BatchNormalization), so a converter for exactly those
operators is about forty lines. It refuses any other operator or any branching
rather than guess; `tests/test_teacher_torch.py` checks it against ONNX Runtime.
Written here rather than taken from `onnx2torch` because that adds a dependency
(and its FX graph) for seven operators, and the result must be an ordinary module
that `torch.compile` and autocast treat like the student.
"""

from pathlib import Path

import numpy as np
import torch
from onnx import helper, load, numpy_helper
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval


class ConversionError(ValueError):
    pass


class _Affine(torch.nn.Module):
    """x - a, or x * a, for the graph's leading input normalisation."""

    def __init__(self, op: str, value: np.ndarray):
        super().__init__()
        self.op = op
        self.register_buffer("value", torch.from_numpy(value.astype(np.float32)))

    def forward(self, x):
        return x - self.value if self.op == "Sub" else x * self.value


def _prelu(slope: np.ndarray) -> torch.nn.PReLU:
    """ONNX PRelu with a (C, 1, 1) slope."""
    layer = torch.nn.PReLU(slope.size)
    layer.weight.data.copy_(torch.from_numpy(slope.astype(np.float32).reshape(-1)))
    return layer


def _attributes(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _batchnorm(node, weights, dims: int) -> torch.nn.Module:
    gamma, beta, mean, var = (weights[name] for name in node.input[1:5])
    bn = (torch.nn.BatchNorm2d if dims == 4 else torch.nn.BatchNorm1d)(len(gamma), eps=_attributes(node)["epsilon"])
    for name, value in zip(("weight", "bias", "running_mean", "running_var"), (gamma, beta, mean, var)):
        getattr(bn, name).data.copy_(torch.from_numpy(value.astype(np.float32)))
    return bn


def _conv(node, weights) -> torch.nn.Module:
    a = _attributes(node)
    w = weights[node.input[1]]
    pads = a.get("pads", [0, 0, 0, 0])
    if pads[:2] != pads[2:]:
        raise ConversionError(f"{node.name}: asymmetric padding {pads}")
    conv = torch.nn.Conv2d(w.shape[1] * a.get("group", 1), w.shape[0], tuple(w.shape[2:]),
                           stride=tuple(a.get("strides", [1, 1])), padding=tuple(pads[:2]),
                           dilation=tuple(a.get("dilations", [1, 1])), groups=a.get("group", 1),
                           bias=len(node.input) > 2)
    conv.weight.data.copy_(torch.from_numpy(w.astype(np.float32)))
    if conv.bias is not None:
        conv.bias.data.copy_(torch.from_numpy(weights[node.input[2]].astype(np.float32)))
    return conv


def _gemm(node, weights) -> torch.nn.Module:
    a = _attributes(node)
    if a.get("transA", 0) or not a.get("transB", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        raise ConversionError(f"{node.name}: only Gemm(x, W^T) + b is supported, got {a}")
    w, b = weights[node.input[1]], weights[node.input[2]]
    fc = torch.nn.Linear(w.shape[1], w.shape[0])
    fc.weight.data.copy_(torch.from_numpy(w.astype(np.float32)))
    fc.bias.data.copy_(torch.from_numpy(b.astype(np.float32)))
    return fc


def chain_from_onnx(path: Path) -> torch.nn.Sequential:
    """The ONNX graph at `path` as an eval-mode torch.nn.Sequential, frozen."""
    graph = load(str(path)).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            weights[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    current, dims, layers = graph.input[0].name, 4, []
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        data = [name for name in node.input if name and name not in weights]
        if data != [current]:
            raise ConversionError(f"{path}: {node.op_type} {node.name!r} does not continue the chain "
                                  f"(inputs {list(node.input)}, expected {current!r})")
        if node.op_type in ("Sub", "Mul"):
            layers.append(_Affine(node.op_type, weights[node.input[1]]))
        elif node.op_type == "Conv":
            layers.append(_conv(node, weights))
        elif node.op_type == "BatchNormalization":
            layers.append(_batchnorm(node, weights, dims))
        elif node.op_type == "PRelu":
            layers.append(_prelu(weights[node.input[1]]))
        elif node.op_type == "Dropout":
            pass  # inference: identity
        elif node.op_type == "Flatten":
            layers.append(torch.nn.Flatten())
            dims = 2
        elif node.op_type == "Gemm":
            layers.append(_gemm(node, weights))
        else:
            raise ConversionError(f"{path}: operator {node.op_type} is not supported by this converter")
        current = node.output[0]
    if current != graph.output[0].name:
        raise ConversionError(f"{path}: the chain ends at {current!r}, not the graph output")
    model = torch.nn.Sequential(*_folded(layers)).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


@torch.no_grad()
def _folded(layers: list[torch.nn.Module]) -> list[torch.nn.Module]:
    """Folds every batch norm into the convolution or linear layer next to it (exact
    in inference). Unfolded, the batch norms and the casts around them took 90% of
    the teacher's CPU time; the convolutions 9%."""
    out: list[torch.nn.Module] = []
    pending_bn2d = None  # a batch norm after the last PReLU, to fold into the Linear after Flatten
    for layer in layers:
        previous = out[-1] if out else None
        if isinstance(layer, torch.nn.BatchNorm2d) and isinstance(previous, torch.nn.Conv2d):
            out[-1] = fuse_conv_bn_eval(previous.eval(), layer.eval())
        elif isinstance(layer, torch.nn.BatchNorm1d) and isinstance(previous, torch.nn.Linear):
            out[-1] = fuse_linear_bn_eval(previous.eval(), layer.eval())
        elif isinstance(layer, torch.nn.BatchNorm2d) and pending_bn2d is None:
            pending_bn2d = layer
        elif isinstance(layer, torch.nn.Flatten):
            out.append(layer)
        elif isinstance(layer, torch.nn.Linear) and pending_bn2d is not None:
            # Linear(flatten(x * a + c)): a and c are per channel, repeated over the H*W positions.
            scale = pending_bn2d.weight / torch.sqrt(pending_bn2d.running_var + pending_bn2d.eps)
            shift = pending_bn2d.bias - pending_bn2d.running_mean * scale
            spatial = layer.in_features // len(scale)
            layer.bias.add_(layer.weight @ shift.repeat_interleave(spatial))
            layer.weight.mul_(scale.repeat_interleave(spatial))
            pending_bn2d = None
            out.append(layer)
        else:
            if pending_bn2d is not None:
                out.append(pending_bn2d)
                pending_bn2d = None
            out.append(layer)
    return out


def load_teacher(path: Path) -> torch.nn.Module:
    """The teacher from its ONNX file, or from a module saved by `save_teacher`
    (the GPU bundle carries it that way: half the bytes, no onnx needed)."""
    if Path(path).suffix == ".onnx":
        return chain_from_onnx(path)
    model = torch.load(path, map_location="cpu", weights_only=False).float().eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def save_teacher(model: torch.nn.Module, path: Path) -> None:
    """Saves the converted teacher in float16 (SFace: 19 MB instead of 37)."""
    import copy

    torch.save(copy.deepcopy(model).half(), path)
