"""Where ONNX Runtime's CPU provider spends its time on an embedder: faces/s and the
share of kernel time per operator, with convolutions split by kind (1x1 or kxk,
dense or grouped) and their multiply-adds per second. Compare graph optimisation
levels side by side with --levels.

    .venv/bin/python bench/python/ort_profile.py --batch 4 --levels all,extended

ONNX Runtime's own profiler (SessionOptions.enable_profiling) gives the per-node
times; the real face crop is the one ort_speed.py and vargid-bench send.
"""

import argparse
import collections
import json
import os
import time

import numpy as np
import onnxruntime as ort

from ort_speed import face_tensor

LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,  # what vargid uses (NCHWc layout included)
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,  # without the NCHWc layout
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
}


def shape(entry: dict) -> list[int]:
    return next(iter(entry.values()))


def conv_kind(args: dict) -> tuple[str, float]:
    """('k1 dense' | 'k3 grouped (8 per group)' | ..., multiply-adds) of one Conv event."""
    x, w = shape(args["input_type_shape"][0]), shape(args["input_type_shape"][1])
    out = shape(args["output_type_shape"][0])
    per_group = w[1]
    kind = f"k{w[2]} " + ("dense" if per_group == x[1] else f"grouped ({per_group} per group)")
    return kind, float(out[0] * w[0] * per_group * w[2] * w[3] * out[2] * out[3])


def profile(model: str, level: str, batch: int, seconds: float, threads: int, face: np.ndarray) -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = LEVELS[level]
    options.enable_profiling = True
    options.profile_file_prefix = f"/tmp/ort_profile_{os.getpid()}"
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.repeat(face, batch, 0)}
    for _ in range(3):
        session.run(None, feed)
    runs, started = 0, time.time()
    while time.time() - started < seconds:
        session.run(None, feed)
        runs += 1
    rate = runs * batch / (time.time() - started)
    path = session.end_profiling()
    with open(path) as f:
        events = [e for e in json.load(f) if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    os.remove(path)

    by_op, by_conv, macs = collections.Counter(), collections.Counter(), collections.Counter()
    for e in events:
        op = e["args"]["op_name"]
        by_op[op] += e["dur"]
        if op in ("Conv", "FusedConv"):
            kind, mac = conv_kind(e["args"])
            by_conv[kind] += e["dur"]
            macs[kind] += mac
    total = sum(by_op.values())
    print(f"\n{model}, level {level}, batch {batch}, {threads} threads: {rate:.1f} faces/s")
    print("| operator | share of kernel time |\n|---|---:|")
    for op, us in by_op.most_common(8):
        print(f"| {op} | {100 * us / total:.1f}% |")
    print("| convolution | share of kernel time | G multiply-adds/s while running |\n|---|---:|---:|")
    for kind, us in by_conv.most_common():
        print(f"| {kind} | {100 * us / total:.1f}% | {macs[kind] / us / 1e3:.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/vargfacenet.onnx")
    p.add_argument("--face", default="../shared/data/lfw/images/Ann_Veneman/Ann_Veneman_0003.jpg")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--levels", default="all", help=f"comma-separated, of {', '.join(LEVELS)}")
    args = p.parse_args()
    print(f"onnxruntime {ort.__version__}")
    face = face_tensor(args.face)
    for level in args.levels.split(","):
        profile(args.model, level, args.batch, args.seconds, args.threads, face)


if __name__ == "__main__":
    main()
