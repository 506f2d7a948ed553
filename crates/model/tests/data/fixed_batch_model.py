"""Writes fixed_batch_1.onnx: a 200-byte stand-in for face embedders whose ONNX
fixes the batch at one. Input `data` [1, 3, 112, 112], output `embedding` [1, 3]:
the mean of each colour channel (so a solid-colour crop embeds to its colour).

    .venv/bin/python crates/model/tests/data/fixed_batch_model.py
"""

from pathlib import Path

import onnx
from onnx import TensorProto, helper

graph = helper.make_graph(
    [helper.make_node("ReduceMean", ["data"], ["embedding"], axes=[2, 3], keepdims=0)],
    "fixed_batch_1",
    [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
    [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 3])],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="vargid-tests")
model.ir_version = 8
helper.set_model_props(model, {"model_name": "mean-colour", "model_version": "test", "embedding_size": "3"})
onnx.checker.check_model(model)
onnx.save(model, Path(__file__).with_name("fixed_batch_1.onnx"))
