"""Where a VarGFaceNet's weights come from: seeded initialisation with
calibrated BatchNorm statistics, or a torch checkpoint / exported ONNX file."""

from pathlib import Path

import torch
from torch import nn

from .model import INPUT_SIZE, VarGFaceNet
from .onnx_io import load_onnx_weights, read_onnx_tensors

EMBEDDING_WEIGHT = "embedding.fc.weight"


def initialize_like_insightface(model: nn.Module) -> None:
    """The insightface MXNet recipe: Xavier(gaussian, factor 'out', magnitude 2),
    i.e. He-normal over fan-out, for conv and FC weights; zero biases; BN
    gamma 1 / beta 0; PReLU slopes 0.25 (the PyTorch and MXNet default)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            module.reset_running_stats()


@torch.no_grad()
def calibrate_batchnorm(
    model: nn.Module, generator: torch.Generator, batches: int = 2, batch_size: int = 16
) -> None:
    """Give BN layers real running statistics from random 0..255 images.

    Fresh BN buffers are 0/1, which would make the exported graph's BN nodes
    trivial and hide export or loading mistakes. Momentum None makes the
    running statistics the plain average over the calibration batches.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for _ in range(batches):
        images = torch.rand(batch_size, 3, INPUT_SIZE, INPUT_SIZE, generator=generator) * 255
        model(images)
    for bn, momentum in zip(norms, momenta):
        bn.momentum = momentum
    model.eval()


def seeded_random_model(seed: int, emb_size: int = 512) -> VarGFaceNet:
    """Deterministic random weights for `seed`, BN statistics calibrated, eval mode."""
    torch.manual_seed(seed)
    model = VarGFaceNet(emb_size=emb_size)
    initialize_like_insightface(model)
    calibrate_batchnorm(model, torch.Generator().manual_seed(seed))
    return model


def _checkpoint_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A bare state_dict, or a training checkpoint holding one under
    'state_dict' or 'model'."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def embedding_size_in(path: str | Path) -> int:
    """The embedding width stored in a checkpoint or ONNX file."""
    path = Path(path)
    tensors = read_onnx_tensors(path) if path.suffix == ".onnx" else _checkpoint_state_dict(path)
    if EMBEDDING_WEIGHT not in tensors:
        raise ValueError(f"{path} holds no {EMBEDDING_WEIGHT}; is it a VarGFaceNet?")
    return int(tensors[EMBEDDING_WEIGHT].shape[0])


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a torch checkpoint (.pt/.pth) or an exported ONNX file (.onnx)."""
    path = Path(path)
    if path.suffix == ".onnx":
        load_onnx_weights(model, path)
    else:
        model.load_state_dict(_checkpoint_state_dict(path), strict=True)
    model.eval()


def model_from_weights(path: str | Path) -> VarGFaceNet:
    """A VarGFaceNet sized to, and loaded from, a checkpoint or ONNX file."""
    model = VarGFaceNet(emb_size=embedding_size_in(path))
    load_weights(model, path)
    return model
