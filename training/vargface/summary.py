"""Parameter and multiply-add counts of VarGFaceNet at 112x112.

    python -m vargface.summary [--emb-size N]

Parameters: every trainable tensor (conv/FC weights and biases, BN gamma and
beta, PReLU slopes); BN running statistics are buffers and not counted.
Multiply-adds: counted with forward hooks on every Conv2d and Linear layer
(output elements x input elements feeding each one). Element-wise work (BN,
PReLU, sigmoid, additions, the SE multiply, pooling, input scaling) is not
counted, as is usual for MAC figures.
"""

import argparse

import torch
from torch import nn

from .model import INPUT_SIZE, VarGFaceNet

REFERENCE_PARAMS = 5_198_292
REFERENCE_MACS = 0.5126e9
OFFICIAL_README_FLOPS = 1022e6


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_size: int = INPUT_SIZE) -> int:
    """Multiply-adds of Conv2d and Linear layers for one image."""
    total = 0

    def conv_hook(conv: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kernel_h, kernel_w = conv.kernel_size
        per_output = (conv.in_channels // conv.groups) * kernel_h * kernel_w
        total += output[0].numel() * per_output

    def linear_hook(linear: nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output[0].numel() * linear.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total


def relative_difference(measured: float, reference: float) -> float:
    return (measured - reference) / reference


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vargface.summary", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--emb-size", type=int, default=512)
    args = parser.parse_args(argv)

    model = VarGFaceNet(emb_size=args.emb_size)
    params = count_parameters(model)
    macs = count_macs(model)
    flops = 2 * macs
    rows = [
        (
            "parameters",
            f"{params:,}",
            f"{REFERENCE_PARAMS:,} (reference, emb 512)",
            relative_difference(params, REFERENCE_PARAMS),
        ),
        (
            "multiply-adds",
            f"{macs:,} = {macs / 1e9:.4f} G",
            f"{REFERENCE_MACS / 1e9:.4f} G (reference)",
            relative_difference(macs, REFERENCE_MACS),
        ),
        (
            "FLOPs, 2 x MACs",
            f"{flops / 1e6:.1f} M",
            f"{OFFICIAL_README_FLOPS / 1e6:.0f} M (official README)",
            relative_difference(flops, OFFICIAL_README_FLOPS),
        ),
    ]
    print(f"VarGFaceNet, emb_size {args.emb_size}, input 3x{INPUT_SIZE}x{INPUT_SIZE}")
    print(f"{'':<16} {'measured':<28} {'paper/reference':<34} difference")
    for label, measured, reference, difference in rows:
        print(f"{label:<16} {measured:<28} {reference:<34} {difference:+.3%}")
    print(
        "parameters: trainable tensors incl. BN gamma/beta and PReLU slopes, "
        "excl. BN running stats"
    )
    print(
        "multiply-adds: Conv2d and Linear layers only; "
        "BN, PReLU, SE gating, additions not counted"
    )

if __name__ == "__main__":
    main()
