"""Raw ONNX Runtime speed of an embedder from Python, on a real face crop, random
values and zeros (the speed of some ONNX Runtime versions depends on the input's
values). Run it with each version's Python package to compare them, e.g.

    pip install --target /tmp/ort-1.26.0 --no-deps onnxruntime==1.26.0
    PYTHONPATH=/tmp/ort-1.26.0 .venv/bin/python bench/python/ort_speed.py

Options: --model ONNX, --face JPG, --seconds S (per point), --threads N,
--provider cpu|openvino (the onnxruntime-openvino package), --precision (OpenVINO's).
"""

import argparse
import time

import numpy as np
import onnxruntime as ort
from PIL import Image


def face_tensor(path: str) -> np.ndarray:
    """The centre crop vargid-bench sends: 2/5 of the shorter side, resized to 112."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    side = min(w, h) * 2 // 5
    left, top = (w - side) // 2, (h - side) // 2
    crop = img.crop((left, top, left + side, top + side)).resize((112, 112), Image.BILINEAR)
    return np.asarray(crop, dtype=np.float32).transpose(2, 0, 1)[None].copy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/vargfacenet.onnx")
    p.add_argument("--face", default="../shared/data/lfw/images/Ann_Veneman/Ann_Veneman_0003.jpg")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--provider", choices=("cpu", "openvino"), default="cpu")
    p.add_argument("--precision", default="FP32",
                   help="OpenVINO's precision: FP32, FP16 (bf16/fp16 kernels where the CPU has them), ACCURACY")
    p.add_argument("--ov-config", help='OpenVINO properties as JSON, e.g. {"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}}')
    args = p.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    providers = ["CPUExecutionProvider"] if args.provider == "cpu" else [
        ("OpenVINOExecutionProvider", {"device_type": "CPU", "precision": args.precision,
                                       "num_of_threads": str(args.threads),
                                       **({"load_config": args.ov_config} if args.ov_config else {})})]
    session = ort.InferenceSession(args.model, options, providers=providers)
    name = session.get_inputs()[0].name
    real = face_tensor(args.face)
    inputs = {"real face 0..255": real,
              "random -1..1": np.random.default_rng(0).uniform(-1, 1, real.shape).astype(np.float32),
              "zeros": np.zeros_like(real)}
    print(f"onnxruntime {ort.__version__}, {args.provider} {args.precision if args.provider != 'cpu' else ''}, "
          f"{args.threads} threads, providers in use {session.get_providers()}")
    print("| input | batch 1 faces/s | batch 16 faces/s |\n|---|---:|---:|")
    for label, x1 in inputs.items():
        rates = []
        for batch in (1, 16):
            x = np.repeat(x1, batch, 0)
            session.run(None, {name: x})
            n, started = 0, time.time()
            while time.time() - started < args.seconds:
                session.run(None, {name: x})
                n += batch
            rates.append(n / (time.time() - started))
        print(f"| {label} | {rates[0]:.1f} | {rates[1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
