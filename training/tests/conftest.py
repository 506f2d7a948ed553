import pytest
import torch

from vargface.export import export_onnx, model_metadata
from vargface.model import VarGFaceNet
from vargface.weights import calibrate_batchnorm, initialize_like_insightface


@torch.no_grad()
def _perturb_constant_initialised_parameters(model: torch.nn.Module, seed: int) -> None:
    """Make BN gammas/betas, PReLU slopes and biases (initialised to constants)
    all distinct, so a loader that confused two tensors of one shape could not
    pass by luck. Conv and FC weights are random already."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in model.parameters():
        is_random_weight = parameter.dim() > 1
        if not is_random_weight:
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory):
    """A 512-d model with non-trivial weights and BN statistics, and its ONNX export."""
    torch.manual_seed(7)
    model = VarGFaceNet(emb_size=512)
    initialize_like_insightface(model)
    _perturb_constant_initialised_parameters(model, seed=8)
    calibrate_batchnorm(model, torch.Generator().manual_seed(9))
    path = tmp_path_factory.mktemp("export") / "vargfacenet.onnx"
    export_onnx(model, path, model_metadata(512, "0.0.0-test", "test fixture"))
    return model, path
