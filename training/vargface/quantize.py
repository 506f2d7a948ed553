"""int8 static quantization of an embedder for OpenVINO, with NNCF, calibrated on
training crops (never on LFW, which is for evaluation only).

    python -m vargface.quantize --model models/vargfacenet.onnx \
        --prepared runs/prepared42k.zip --out models/vargfacenet-int8.onnx

NNCF (Intel's post-training quantization, ONNX backend) writes a QDQ ONNX model whose
quantizers sit where OpenVINO's int8 kernels expect them. Measured on a 2-core
AVX-512 VNNI Xeon (docs/benchmarks.md, "int8 on OpenVINO"): 1.4x OpenVINO's float32 faces/s,
where ONNX Runtime's own `quantize_static` (QDQ, per-channel U8S8), which this module
used before, ran at half OpenVINO's float32 speed. The calibration crops are spread
evenly over the prepared set (all three face folders).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from . import archive


def calibration_crops(prepared: Path, count: int) -> np.ndarray:
    import json
    import zipfile

    with zipfile.ZipFile(prepared) as z:
        total = len(json.loads(z.read("manifest.json"))["crops"])
        picks = np.linspace(0, total - 1, num=min(count, total)).astype(int)
        return np.stack([archive.decode_crop(z.read(archive.crop_name(int(i)))) for i in picks])


def quantize(model: Path, prepared: Path, out: Path, count: int,
             overflow_fix: str = "first_layer_only", preset: str = "performance",
             float_ops: tuple[str, ...] = ()) -> None:
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    import onnx

    source = onnx.load(str(model))
    input_name = source.graph.input[0].name
    crops = calibration_crops(prepared, count)
    # One NCHW float32 face per calibration item, as the service feeds the model.
    items = [{input_name: c[None].transpose(0, 3, 1, 2).astype(np.float32)} for c in crops]
    # overflow_fix "enable": 7-bit weights everywhere, so that CPUs without VNNI (u8 x s8
    # products summed in 16 bits) cannot saturate; NNCF's default does the first layer.
    # preset "mixed": asymmetric activation ranges, for lopsided PReLU outputs. On an
    # AVX2 CPU through the service, "mixed" (with the Gemm in float) recovered 0.64 of
    # the 0.79 rank-1 points int8 lost, at 0.70x the speed; "enable" recovered none
    # (docs/benchmarks.md, "What the int8 accuracy loss comes from").
    advanced = AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix(overflow_fix))
    ignored = nncf.IgnoredScope(types=list(float_ops)) if float_ops else None  # e.g. the final Gemm
    quantized = nncf.quantize(source, nncf.Dataset(items), subset_size=len(items),
                              preset=nncf.QuantizationPreset(preset), ignored_scope=ignored,
                              advanced_parameters=advanced)
    # The source's metadata, model_version included: the int8 embeddings equal the
    # float32 ones to a cosine above 0.99 (checked in pytest, measured on LFW in the
    # model card), so galleries serve both; `precision` tells them apart.
    meta = {p.key: p.value for p in source.metadata_props}
    meta["precision"] = "int8"
    meta["quantization"] = (f"NNCF {nncf.__version__} post-training int8 (QDQ), "
                            f"{len(items)} calibration crops from the training set, "
                            f"overflow fix {overflow_fix}, preset {preset}"
                            + (f", float {'/'.join(float_ops)}" if float_ops else ""))
    del quantized.metadata_props[:]
    for key, value in meta.items():
        quantized.metadata_props.add(key=key, value=value)
    onnx.save(quantized, str(out))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("models/vargfacenet.onnx"))
    p.add_argument("--prepared", type=Path, required=True, help="vargface.prepare's archive")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--count", type=int, default=300, help="calibration crops")
    p.add_argument("--overflow-fix", choices=("first_layer_only", "enable", "disable"),
                   default="first_layer_only",
                   help="NNCF's 7-bit weights against 16-bit saturation without VNNI: on the first "
                        "layer only (NNCF's default), everywhere, or nowhere")
    p.add_argument("--preset", choices=("performance", "mixed"), default="performance",
                   help="NNCF's preset: symmetric activation ranges, or asymmetric ones")
    p.add_argument("--float-op", action="append", default=[], metavar="TYPE",
                   help="leave every node of this ONNX operator type in float32 (repeatable), e.g. Gemm")
    args = p.parse_args(argv)
    quantize(args.model, args.prepared, args.out, args.count, args.overflow_fix, args.preset,
             tuple(args.float_op))
    print(f"quantize: {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) from {args.model}, "
          f"{args.count} calibration crops")
    return 0


if __name__ == "__main__":
    sys.exit(main())
