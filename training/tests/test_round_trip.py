import pytest
import torch

from vargface.model import VarGFaceNet
from vargface.onnx_io import OnnxWeightsError, load_onnx_weights
from vargface.weights import model_from_weights


def _inputs() -> torch.Tensor:
    return torch.rand(3, 3, 112, 112, generator=torch.Generator().manual_seed(3)) * 255


def _assert_same_weights_and_outputs(original: torch.nn.Module, restored: torch.nn.Module) -> None:
    original_state, restored_state = original.state_dict(), restored.state_dict()
    assert original_state.keys() == restored_state.keys()
    for name, tensor in original_state.items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(tensor, restored_state[name]), name
    original.eval()
    restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(_inputs()), original(_inputs()), rtol=0, atol=1e-5)


def test_onnx_weights_load_back_into_a_fresh_module(exported_model):
    original, path = exported_model
    fresh = VarGFaceNet(emb_size=512)  # different (default) initialisation
    load_onnx_weights(fresh, path)
    _assert_same_weights_and_outputs(original, fresh)


def test_model_from_weights_reads_torch_checkpoints_and_onnx(exported_model, tmp_path):
    original, onnx_path = exported_model
    checkpoint = tmp_path / "ckpt.pt"
    torch.save({"state_dict": original.state_dict(), "epoch": 1}, checkpoint)
    _assert_same_weights_and_outputs(original, model_from_weights(checkpoint))
    _assert_same_weights_and_outputs(original, model_from_weights(onnx_path))


def test_loading_into_a_differently_sized_module_names_the_tensors(exported_model):
    _, path = exported_model
    expected = r"shape mismatch: embedding\.fc\.bias.*embedding\.fc\.weight"
    with pytest.raises(OnnxWeightsError, match=expected):
        load_onnx_weights(VarGFaceNet(emb_size=128), path)


def test_missing_and_extra_tensors_are_reported(exported_model):
    _, path = exported_model
    module = VarGFaceNet(emb_size=512)
    module.extra = torch.nn.Linear(2, 2)  # state entries the file lacks
    expected = r"missing from the file: extra\.bias, extra\.weight"
    with pytest.raises(OnnxWeightsError, match=expected):
        load_onnx_weights(module, path)
    del module.extra
    del module.embedding.fc_bn  # file entries the module lacks
    with pytest.raises(OnnxWeightsError, match=r"not in the module: embedding\.fc_bn\.bias"):
        load_onnx_weights(module, path)
