"""The committed model and reference embedding agree with the code."""

import json
from pathlib import Path

import numpy as np
import onnx

from vargface.parity import MAX_ABS_DIFF, MIN_COSINE
from vargface.reference import INPUT_DESCRIPTION, reference_embedding
from vargface.weights import model_from_weights

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED_ONNX = REPO_ROOT / "models" / "vargfacenet.onnx"
COMMITTED_REFERENCE = REPO_ROOT / "crates/model/tests/data/reference_embedding.json"

REQUIRED_METADATA = {
    "model_name": "vargfacenet",
    "model_version": None,  # any value
    "embedding_size": None,  # checked against the graph's output below
    "input_layout": "NCHW",
    "color_order": "RGB",
    "input_range": "0..255",
    "input_size": "112x112",
    "normalization": "(x-127.5)/128 inside graph",
    "output_normalized": "false",
    "training_summary": None,
}


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_committed_onnx_declares_the_contract():
    proto = onnx.load(str(COMMITTED_ONNX))
    metadata = {p.key: p.value for p in proto.metadata_props}
    for key, expected in REQUIRED_METADATA.items():
        assert key in metadata, key
        assert metadata[key], key
        if expected is not None:
            assert metadata[key] == expected, key
    (graph_input,) = proto.graph.input
    (graph_output,) = proto.graph.output
    assert graph_input.name == "input" and _dims(graph_input) == ["batch", 3, 112, 112]
    width = int(metadata["embedding_size"])
    assert graph_output.name == "embedding" and _dims(graph_output) == ["batch", width]
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17


def test_committed_reference_embedding_is_what_the_code_computes():
    record = json.loads(COMMITTED_REFERENCE.read_text())
    assert record["model"] == "models/vargfacenet.onnx"
    assert record["input"] == INPUT_DESCRIPTION
    committed = np.array(record["embedding_raw"])
    normalized = np.array(record["embedding_normalized"])
    width = int({p.key: p.value for p in onnx.load(str(COMMITTED_ONNX)).metadata_props}["embedding_size"])
    assert committed.shape == normalized.shape == (width,)
    np.testing.assert_allclose(normalized, committed / np.linalg.norm(committed), atol=1e-12)

    # Loading the committed ONNX also exercises the Identity-aliased
    # initializers of untrained weights (equal BN gammas, PReLU slopes).
    now = reference_embedding(model_from_weights(COMMITTED_ONNX)).astype(np.float64)
    cosine = now @ committed / (np.linalg.norm(now) * np.linalg.norm(committed))
    assert np.abs(now - committed).max() < MAX_ABS_DIFF
    assert cosine > MIN_COSINE


COMMITTED_INT8 = REPO_ROOT / "models" / "vargfacenet-int8.onnx"


def test_committed_int8_model_is_the_committed_model_quantized():
    """`python -m vargface.quantize` of the committed model, re-run with each generation:
    its metadata is the source's (model_version included) plus `precision` and
    `quantization`, and it computes nearly the same embedding."""
    import onnxruntime as ort

    from vargface.reference import reference_input

    source, int8 = ({p.key: p.value for p in onnx.load(str(m)).metadata_props}
                    for m in (COMMITTED_ONNX, COMMITTED_INT8))
    assert int8.pop("precision") == "int8"
    assert int8.pop("quantization").startswith("NNCF")
    assert int8 == source
    x = reference_input().numpy()
    embeddings = []
    for path in (COMMITTED_ONNX, COMMITTED_INT8):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        e = session.run(None, {"input": x})[0][0]
        embeddings.append(e / np.linalg.norm(e))
    # 0.985 on this synthetic pattern; at least 0.995 on LFW faces (tests/tests/int8.rs).
    assert embeddings[0] @ embeddings[1] > 0.97
