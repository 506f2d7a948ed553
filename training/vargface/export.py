"""Export VarGFaceNet to ONNX and check it against PyTorch.

    python -m vargface.export --out models/vargfacenet.onnx \
        [--weights ckpt.pt|model.onnx] [--seed 0] [--emb-size 512]

Without --weights the model is a seeded random initialisation whose BN layers
were given running statistics from random inputs. The exit status is non-zero
when ONNX Runtime and PyTorch disagree (see vargface.parity).
"""

import argparse
import sys
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from .model import INPUT_SIZE
from .parity import MAX_ABS_DIFF, MIN_COSINE, check_parity
from .weights import model_from_weights, seeded_random_model

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "embedding"
VERSION = "0.1.0"


def model_metadata(emb_size: int, model_version: str, training_summary: str) -> dict[str, str]:
    """The input/output contract the service reads from metadata_props."""
    return {
        "model_name": "vargfacenet",
        "model_version": model_version,
        "embedding_size": str(emb_size),
        "input_layout": "NCHW",
        "color_order": "RGB",
        "input_range": "0..255",
        "input_size": f"{INPUT_SIZE}x{INPUT_SIZE}",
        "normalization": "(x-127.5)/128 inside graph",
        "output_normalized": "false",
        "training_summary": training_summary,
    }


def export_onnx(model: nn.Module, path: str | Path, metadata: dict[str, str]) -> None:
    """Write `model` (eval mode) to `path` with a dynamic batch axis.

    The TorchScript exporter without constant folding keeps parameter names as
    initializer names and leaves BatchNormalization nodes (with their running
    statistics) unfused, which is what vargface.onnx_io needs to read weights
    back; ONNX Runtime fuses BN itself when it loads the graph. Equal tensors
    (e.g. untrained BN gammas) are stored once and aliased by Identity nodes,
    which onnx_io resolves.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    with warnings.catch_warnings():
        # The legacy exporter is chosen on purpose (see above); its
        # deprecation notices would only be noise on every export.
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=False,
            training=torch.onnx.TrainingMode.EVAL,
            export_params=True,
        )
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vargface.export", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", required=True, type=Path, help="ONNX file to write")
    parser.add_argument("--weights", type=Path, help="torch checkpoint (.pt) or exported .onnx")
    parser.add_argument("--seed", type=int, default=0, help="random initialisation seed")
    parser.add_argument("--emb-size", type=int, help="default: from --weights, else 512")
    parser.add_argument("--model-version", help="metadata model_version")
    parser.add_argument("--training-summary", help="metadata training_summary (one line)")
    args = parser.parse_args(argv)

    if args.weights:
        model = model_from_weights(args.weights)
        if args.emb_size is not None and args.emb_size != model.emb_size:
            parser.error(f"--emb-size {args.emb_size} but {args.weights} has {model.emb_size}")
        default_version = f"{VERSION}-{args.weights.stem}"
        default_summary = f"weights loaded from {args.weights.name}"
    else:
        emb_size = 512 if args.emb_size is None else args.emb_size
        model = seeded_random_model(args.seed, emb_size)
        default_version = f"{VERSION}-random-seed{args.seed}"
        default_summary = (
            f"seeded random initialisation (seed {args.seed}), BN statistics from random "
            "inputs; NOT trained, not usable for identification"
        )
    metadata = model_metadata(
        model.emb_size,
        args.model_version or default_version,
        args.training_summary or default_summary,
    )

    export_onnx(model, args.out, metadata)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes, opset {OPSET})")
    for key, value in metadata.items():
        print(f"  {key} = {value}")

    results = check_parity(model, args.out)
    print(
        "parity, ONNX Runtime CPU vs PyTorch "
        f"(pass: max abs < {MAX_ABS_DIFF:g}, cosine > {MIN_COSINE}):"
    )
    for result in results:
        print(f"  {result}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
