"""The in-loop teacher (vargface.teacher_torch) computes what ONNX Runtime computes."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from vargface.evaluate import OnnxEmbedder
from vargface.teacher_torch import ConversionError, chain_from_onnx

SFACE = Path(__file__).resolve().parents[2] / ".deps/models/sface_2021dec_fp32.onnx"


@pytest.mark.skipif(not SFACE.exists(), reason="needs scripts/prepare-models.sh")
def test_sface_chain_matches_onnx_runtime():
    crops = np.random.default_rng(0).integers(0, 256, (5, 112, 112, 3), dtype=np.uint8)
    expected = OnnxEmbedder(SFACE)(crops)
    teacher = chain_from_onnx(SFACE)
    with torch.no_grad():
        got = teacher(torch.from_numpy(crops).permute(0, 3, 1, 2).float()).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert not any(p.requires_grad for p in teacher.parameters())


def test_a_branching_graph_is_refused(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"])],
                              "branch", [x], [y])
    path = tmp_path / "branch.onnx"
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(ConversionError, match="Relu"):
        chain_from_onnx(path)
