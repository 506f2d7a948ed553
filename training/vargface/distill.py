"""Angular knowledge distillation of VarGFaceNet from a cached teacher, recursively.

    python -m vargface.distill --prepared prepared.zip --out runs/gen1 --epochs 30
    python -m vargface.distill --prepared prepared.zip --out runs/gen2 --epochs 30 \
        --init runs/gen1/student.onnx          # generation 2 starts from generation 1

Loss per image (student s, teacher t, both L2-normalised; the paper's angular
distillation):
    (1 - cos(s, t))  +  w_inst * CE(scale * s . T^T, own index)
The second term (instance softmax) uses the teacher embeddings of all training
images T as fixed class centres: with a few tens of thousands of unlabelled
faces, plain 1 - cos collapses towards one direction (measured: cosine 0.2, 65%
on LFW), while contrasting every face with every other teaches the student the
teacher's geometry. The student's embedding width is the teacher's (128 for
SFace) so that the two embeddings are directly comparable.

Augmentation suited to faces: horizontal flip, small shifts and scale changes,
brightness and contrast, occasional greyscale, and mixing between two faces
(mixup or CutMix) on a share of the batches. --low-res shows a share of the faces
at 24-80 px (shrunk and enlarged back), as small faces in photos are. By default the targets are cached:
the teacher's embedding of the clean crop or its mirror, and for a mixed face the
normalised mix of the two faces' embeddings, so the target does not match what
the student sees. With --teacher-online the teacher (vargface.teacher_torch) runs
on the student's final batch every step, so target and input agree, mixed faces
included ("consistent teaching", Beyer et al. 2022, "Knowledge distillation: a
good teacher is patient and consistent").

Checkpoints (`checkpoint.pt`, every --checkpoint-every steps and at each epoch
end) hold model, optimiser, schedule and position; --resume continues from one.
At the end the student is exported to `<out>/student.onnx` (with metadata) and
checked against PyTorch; the next generation can start from that file at any
later time. Runs on CUDA when available, else on the CPU.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .archive import read
from .export import VERSION, export_onnx, model_metadata
from .parity import check_parity
from .weights import initialize_like_insightface, model_from_weights
from .model import VarGFaceNet


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prepared", type=Path, required=True, help="archive from prepare + teacher")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--init", type=Path, help="start from this generation's .onnx or .pt")
    p.add_argument("--generation", type=int, default=0, help="recorded in metadata (default: 1, or 2 with --init)")
    p.add_argument("--epochs", type=float, default=30.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--inst-weight", type=float, default=1.0, help="instance-softmax term weight")
    p.add_argument("--inst-scale", type=float, default=30.0)
    p.add_argument("--mixup", type=float, default=0.2, help="share of batches mixed between faces")
    p.add_argument("--relation-weight", type=float, default=0.0,
                   help="weight of the neighbourhood term: KL from the teacher's to the student's softmax "
                        "similarities to every other training face (0: off)")
    p.add_argument("--relation-temp", type=float, default=0.05, help="temperature of the neighbourhood term")
    p.add_argument("--low-res", type=float, default=0.0, metavar="SHARE",
                   help="share of faces shown at a lower resolution: shrunk to 24-80 px (one size per "
                        "batch) and enlarged back to 112, as a small face in a photo is (0: off)")
    p.add_argument("--inst-on-mixed", action="store_true",
                   help="keep the instance-softmax term on mixed batches, split between the two faces by "
                        "their share (without it mixed batches have the angular term only)")
    p.add_argument("--mix", choices=("mixup", "cutmix"), default="mixup",
                   help="how a mixed batch blends two faces: a weighted sum, or a rectangle of one pasted "
                        "on the other")
    p.add_argument("--teacher-online", type=Path, metavar="MODEL",
                   help="consistent teaching: run this teacher on the student's own augmented (and mixed) "
                        "batch every step, so the target is the teacher's embedding of exactly what the "
                        "student sees; without it the targets are the cached embeddings of the clean crop "
                        "and its mirror (and their normalised mix). MODEL: the teacher's .onnx, or the .pt "
                        "that vargface.teacher_torch.save_teacher writes")
    p.add_argument("--limit", type=int, default=0, help="only the first N crops (smoke runs)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training step (measured on 2 CPU cores: 18.2 img/s vs 14.0 eager)")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast for the student's forward pass; weights, optimiser and loss stay "
                        "float32 (measured on 2 AVX512-BF16 cores: 1.76 s vs 2.40 s per batch of 64)")
    return p.parse_args(argv)


LOW_RES_SIDES = (24, 80)  # px: below 24 a face has no usable detail, above 80 little is lost


def augment(x: torch.Tensor, generator: torch.Generator, low_res: float = 0.0) -> torch.Tensor:
    """Photometric and small geometric jitter on a float batch (N, 3, 112, 112) in 0..255;
    with `low_res`, that share of the faces also lose detail as a small face does."""
    n = x.shape[0]
    dev = x.device
    rand = lambda *s: torch.rand(*s, generator=generator).to(dev)  # noqa: E731
    scale = 1.0 + (rand(n) - 0.5) * 0.16  # +-8%
    shift = (rand(n, 2) - 0.5) * 0.1  # +-5% of the side
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    brightness = (rand(n, 1, 1, 1) - 0.5) * 60.0
    contrast = 1.0 + (rand(n, 1, 1, 1) - 0.5) * 0.5
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + brightness
    grey = rand(n) < 0.1
    if grey.any():
        x[grey] = x[grey].mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    if low_res > 0:  # drawn only when asked, so the other recipes' random streams stay as they were
        x = shrunk(x, rand(n) < low_res, rand(1).item())
    return x.clamp(0.0, 255.0)


def shrunk(x: torch.Tensor, chosen: torch.Tensor, where: float) -> torch.Tensor:
    """The chosen faces shrunk to a side `where` of the way through LOW_RES_SIDES
    (antialiased, like a camera's small face) and enlarged back, like an aligner's warp."""
    if not chosen.any():
        return x
    low, high = LOW_RES_SIDES
    side = int(round(low + where * (high - low)))
    small = F.interpolate(x[chosen], size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    x = x.clone()
    x[chosen] = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return x


class FusablePReLU(torch.nn.PReLU):
    """PReLU written as max(x,0) + a*min(x,0): the same parameter and result, but
    torch.compile fuses it with the neighbouring batch norm, whereas eager
    PyTorch's own PReLU backward alone took 20% of a CPU training step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slope = self.weight.view(1, -1, 1, 1) if self.weight.numel() > 1 else self.weight
        return torch.clamp_min(x, 0) + slope * torch.clamp_max(x, 0)


def compiled_for_training(model: torch.nn.Module, device: torch.device):
    """The module to call in the training loop; `model` itself keeps the weights
    (state_dict keys, checkpoints and export are unchanged)."""
    for module in model.modules():
        if type(module) is torch.nn.PReLU:
            module.__class__ = FusablePReLU
    return torch.compile(model)


def restore_plain_prelu(model: torch.nn.Module) -> None:
    for module in model.modules():
        if type(module) is FusablePReLU:
            module.__class__ = torch.nn.PReLU


def cpu_has_native_bf16() -> bool:
    """Whether this x86 CPU computes bfloat16 in hardware (AVX512-BF16 or AMX).
    Without it oneDNN emulates bfloat16 and --bf16 runs slower than float32
    (measured on a 2-core Xeon without it, beside other jobs: 21.4 s vs 13.5 s per
    batch of 64)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # cannot tell: trust the caller
    return "avx512_bf16" in flags or "amx_bf16" in flags


def mix_batch(x: torch.Tensor, mode: str, generator: torch.Generator, step: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Blends each face with another of the batch: (mixed batch, partner index,
    share of the first face). CutMix pastes a rectangle of the partner covering
    1 - share of the area."""
    n, _, h, w = x.shape
    lam = float(np.random.default_rng(step).beta(0.4, 0.4)) if mode == "mixup" else \
        float(np.random.default_rng(step).uniform(0.0, 1.0))
    perm = torch.randperm(n, generator=generator).to(x.device)
    if mode == "mixup":
        return lam * x + (1 - lam) * x[perm], perm, lam
    cut_h, cut_w = int(round(h * math.sqrt(1 - lam))), int(round(w * math.sqrt(1 - lam)))
    top = int(torch.randint(0, h - cut_h + 1, (1,), generator=generator).item())
    left = int(torch.randint(0, w - cut_w + 1, (1,), generator=generator).item())
    mixed = x.clone()
    mixed[:, :, top:top + cut_h, left:left + cut_w] = x[perm, :, top:top + cut_h, left:left + cut_w]
    return mixed, perm, 1.0 - (cut_h * cut_w) / (h * w)


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def neighbourhood_kl(student_sims, teacher_sims, own, temperature):
    """KL(teacher || student) between their softmax similarities to the training faces.

    `student_sims` and `teacher_sims` are (batch, faces) cosines to every training
    face's teacher embedding. The instance term only asks that a face be nearest its own
    centre, which the student soon does (its cross-entropy falls to a few hundredths),
    so it stops teaching. 1:N search needs the teacher's order of the *other* faces too:
    which strangers lie close and which far. So the faces' own centres (`own`: index
    tensors, one face per row each) are masked out and the student matches the teacher's
    distribution over the rest (as CompRess and SEED distil a memory bank).
    """
    masked = torch.zeros_like(student_sims, dtype=torch.bool)
    rows = torch.arange(student_sims.shape[0], device=student_sims.device)
    for faces in own:
        masked[rows, faces] = True
    # A large negative, not -inf: the masked entries get probability 0 without 0 * inf.
    with torch.no_grad():
        teacher_p = F.softmax((teacher_sims / temperature).masked_fill(masked, -1e4), dim=-1)
    student_logp = F.log_softmax((student_sims / temperature).masked_fill(masked, -1e4), dim=-1)
    return F.kl_div(student_logp, teacher_p, reduction="batchmean")


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.bf16 and device.type == "cpu" and not cpu_has_native_bf16():
        print("distill: warning: this CPU has no native bfloat16 (avx512_bf16/amx_bf16); --bf16 is "
              "emulated and slower than float32 here: prefer --compile", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    generation = args.generation or (2 if args.init else 1)

    data = read(args.prepared, args.limit)
    if data.teacher is None:
        sys.exit(f"{args.prepared}: no teacher.npy; run python -m vargface.teacher first")
    crops = torch.from_numpy(data.crops).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
    teacher = F.normalize(torch.from_numpy(data.teacher), dim=-1)  # (N, 2, D), or (N, 1, D) clean only
    if teacher.shape[1] < 2 and not args.teacher_online:
        sys.exit(f"{args.prepared}: the teacher cache has no mirrors (vargface.teacher --clean-only); "
                 "train with --teacher-online, or cache the mirrors too")
    count, emb = teacher.shape[0], teacher.shape[2]
    centres = teacher[:, 0].to(device)  # fixed class centres of the instance softmax

    if args.init:
        model = model_from_weights(args.init)
        if model.emb_size != emb:
            sys.exit(f"--init has {model.emb_size}-d embeddings, the teacher {emb}-d")
    else:
        model = VarGFaceNet(emb_size=emb)
        initialize_like_insightface(model)
    model.to(device)
    online = None
    if args.teacher_online:
        from .teacher_torch import load_teacher

        online = load_teacher(args.teacher_online).to(device)
        if device.type == "cpu":
            online.to(memory_format=torch.channels_last)
        if args.compile:
            online = torch.compile(online)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = max(1, count // args.batch_size)
    total_steps = max(1, int(round(args.epochs * steps_per_epoch)))
    step = 0
    generator = torch.Generator().manual_seed(args.seed)
    checkpoint = args.out / "checkpoint.pt"
    if args.resume and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        step = state["step"]
        generator.set_state(state["generator"])
        print(f"distill: resumed at step {step}/{total_steps}")

    log = open(args.out / "train.log", "a")
    print(f"distill: generation {generation}, {count} faces, {emb}-d, {total_steps} steps "
          f"({args.epochs} epochs of {steps_per_epoch}), batch {args.batch_size}, on {device}",
          file=log, flush=True)
    model.train()
    if device.type == "cpu":  # oneDNN convolutions run faster channels-last (bf16 eager: 35.0 vs 28.5 img/s)
        model.to(memory_format=torch.channels_last)
    forward = compiled_for_training(model, device) if args.compile else model
    started, seen, window = time.time(), 0, []
    order = torch.randperm(count, generator=generator)
    while step < total_steps:
        position = (step % steps_per_epoch) * args.batch_size
        if position == 0 and step > 0:
            order = torch.randperm(count, generator=generator)
        idx = order[position:position + args.batch_size]
        x = crops[idx].float()
        flip = torch.rand(len(idx), generator=generator) < 0.5
        x[flip] = x[flip].flip(-1)
        # With the online teacher this placeholder is replaced by its embedding of x below.
        target = teacher[idx, flip.long() if teacher.shape[1] > 1 else 0]
        x = augment(x.to(device), generator, args.low_res)
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        target = target.to(device)
        mixed = torch.rand(1, generator=generator).item() < args.mixup
        if mixed:
            x, perm, lam = mix_batch(x, args.mix, generator, step)
            if online is None:
                target = F.normalize(lam * target + (1 - lam) * target[perm], dim=-1)
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step, total_steps, args.lr, args.warmup_steps)
        if online is not None:
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                target = F.normalize(online(x).float(), dim=-1)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            raw = forward(x)
        student = F.normalize(raw.float(), dim=-1)
        angular = (1.0 - (student * target).sum(dim=-1)).mean()
        loss = angular
        use_inst = args.inst_weight > 0 and (args.inst_on_mixed or not mixed)
        if use_inst or args.relation_weight > 0:
            own = idx.to(device)
            similarities = student @ centres.T  # to every training face's teacher embedding
        if use_inst:
            # A mixed face belongs to both instances, in proportion (as CutMix's labels do).
            logits = args.inst_scale * similarities
            inst = F.cross_entropy(logits, own)
            if mixed:
                inst = lam * inst + (1 - lam) * F.cross_entropy(logits, own[perm])
            loss = loss + args.inst_weight * inst
        if args.relation_weight > 0:
            own_faces = [own] + ([own[perm]] if mixed else [])
            loss = loss + args.relation_weight * neighbourhood_kl(
                similarities, target @ centres.T, own_faces, args.relation_temp)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        seen += len(idx)
        window.append((loss.item(), 1.0 - angular.item()))
        if step % 50 == 0 or step == total_steps:
            losses, cosines = zip(*window)
            rate = seen / (time.time() - started)
            print(f"step {step}/{total_steps} epoch {step / steps_per_epoch:.2f} "
                  f"loss {np.mean(losses):.4f} cos {np.mean(cosines):.4f} "
                  f"lr {optimiser.param_groups[0]['lr']:.2e} {rate:.1f} img/s", file=log, flush=True)
            window = []
        if step % args.checkpoint_every == 0 or step % steps_per_epoch == 0 or step == total_steps:
            save_checkpoint(checkpoint, {"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                                         "step": step, "generator": generator.get_state(),
                                         "args": vars(args) | {"out": str(args.out), "prepared": str(args.prepared),
                                                               "init": str(args.init) if args.init else None}})

    restore_plain_prelu(model)
    model.eval().cpu().to(memory_format=torch.contiguous_format)
    torch.save({"model": model.state_dict()}, args.out / "student.pt")
    relation = (f"neighbourhood KL w={args.relation_weight:g} T={args.relation_temp:g}, "
                if args.relation_weight > 0 else "")
    low_res = f"{args.low_res:g} of faces at {LOW_RES_SIDES[0]}-{LOW_RES_SIDES[1]} px, " if args.low_res > 0 else ""
    summary = (f"generation {generation} angular distillation from SFace "
               f"({'init ' + args.init.name if args.init else 'random init'}), {count} faces, "
               f"{args.epochs:g} epochs, inst-softmax w={args.inst_weight:g} s={args.inst_scale:g}, {relation}{low_res}"
               f"{'online teacher on the augmented view' if online is not None else 'cached clean targets'}, "
               f"{args.mix} on {args.mixup:g} of batches")
    onnx_path = args.out / "student.onnx"
    export_onnx(model, onnx_path, model_metadata(emb, f"{VERSION}-gen{generation}", summary))
    results = check_parity(model, onnx_path)
    (args.out / "run.json").write_text(json.dumps({
        "generation": generation, "steps": step, "faces": count, "summary": summary,
        "parity": [str(r) for r in results], "seconds": round(time.time() - started),
    }, indent=2) + "\n")
    print(f"distill: wrote {onnx_path} ({summary})")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
