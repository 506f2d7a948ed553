"""int8 static quantization of an embedder (QDQ, per-channel weights), calibrated on
training crops (never on LFW, which is for evaluation only).

    python -m vargface.quantize --model models/vargfacenet.onnx \
        --prepared runs/prepared42k.zip --out runs/vargfacenet-int8.onnx

Activations are uint8 and weights int8 (U8S8), the form ONNX Runtime's CPU kernels
run with VNNI instructions (AVX512-VNNI, AVX-VNNI) where the CPU has them. The
calibration crops are spread evenly over the prepared set (all three face folders);
MinMax calibration by default, percentile on request.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from . import archive


class CropReader:
    """ONNX Runtime's CalibrationDataReader over uint8 crops, one batch at a time."""

    def __init__(self, crops: np.ndarray, input_name: str, batch: int = 16):
        self.batches = [crops[i:i + batch].transpose(0, 3, 1, 2).astype(np.float32)
                        for i in range(0, len(crops), batch)]
        self.input_name = input_name
        self.at = 0

    def get_next(self):
        if self.at >= len(self.batches):
            return None
        self.at += 1
        return {self.input_name: self.batches[self.at - 1]}

    def rewind(self):
        self.at = 0


def calibration_crops(prepared: Path, count: int) -> np.ndarray:
    import zipfile
    import json

    with zipfile.ZipFile(prepared) as z:
        total = len(json.loads(z.read("manifest.json"))["crops"])
        picks = np.linspace(0, total - 1, num=min(count, total)).astype(int)
        return np.stack([archive.decode_crop(z.read(archive.crop_name(int(i)))) for i in picks])


def quantize(model: Path, prepared: Path, out: Path, count: int, method: str) -> None:
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = onnx.load(str(model), load_external_data=False).graph.input[0].name
    crops = calibration_crops(prepared, count)
    pre = out.with_suffix(".pre.onnx")
    # Shape inference and graph fusions first, as ONNX Runtime's quantization guide asks.
    quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre), str(out), CropReader(crops, input_name),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method={"minmax": CalibrationMethod.MinMax,
                          "percentile": CalibrationMethod.Percentile}[method],
    )
    pre.unlink(missing_ok=True)
    # Keep the source model's metadata (name, version), marking the version int8.
    source = onnx.load(str(model))
    quantized = onnx.load(str(out))
    meta = {p.key: p.value for p in source.metadata_props}
    if "version" in meta:
        meta["version"] += "+int8"
    del quantized.metadata_props[:]
    for key, value in meta.items():
        quantized.metadata_props.add(key=key, value=value)
    onnx.save(quantized, str(out))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("models/vargfacenet.onnx"))
    p.add_argument("--prepared", type=Path, required=True, help="vargface.prepare's archive")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--count", type=int, default=512, help="calibration crops")
    p.add_argument("--method", choices=("minmax", "percentile"), default="minmax")
    args = p.parse_args(argv)
    quantize(args.model, args.prepared, args.out, args.count, args.method)
    print(f"quantize: {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) from {args.model}, "
          f"{args.count} calibration crops, {args.method}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
