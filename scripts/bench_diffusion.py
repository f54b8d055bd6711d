"""Speed of the image-generation runs: training images/s and DDIM sampling time per image per
step, for the embedded UNet (``ddpm_small``, 16x16x1) and the paper's (``ddpm``, 32x32x3).

    python scripts/bench_diffusion.py                          # CPU, fp32
    python scripts/bench_diffusion.py --device cuda --precision bf16 --batch-ddpm 128

A training step is what the engine does per batch: diffusion loss under autocast, backward,
grad-norm clip 1.0, Adan(AGR) step, EMA update. Medians over ``--steps`` timed steps after
``--warmup`` untimed ones; sampling is one batch of ``--sample-batch`` images over
``--sample-steps`` DDIM steps (median of ``--rounds``). Writes results/bench/diffusion.json.
``--smoke``: the small UNet, one step and one sampling step at batch 1 (a check that the script
still runs, timing nothing), written to a temporary folder unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import agr
from agr_suite.core.config import preset
from agr_suite.diffusion.process import Diffusion
from agr_suite.diffusion.unet import build_unet
from agr_suite.engine.ema import EMA
from agr_suite.engine.machine import environment

SHAPES = {"ddpm_small": (16, 1), "ddpm": (32, 3)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype, enabled=dtype is not None)


def bench_model(name: str, batch: int, args, device: torch.device) -> dict:
    size, channels = SHAPES[name]
    torch.manual_seed(0)
    model = build_unet(preset("model", name), image_size=size, in_chans=channels).to(device)
    diffusion = Diffusion()
    optimizer = agr.build_optimizer("adan_agr", model, lr=2e-4, weight_decay=0.0)
    ema = EMA(model, 0.9999)
    images = torch.rand(batch, channels, size, size, device=device) * 2 - 1

    def step() -> None:
        with _autocast(device, args.precision):
            loss = diffusion.loss(model, images)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(model)

    times = []
    for index in range(args.warmup + args.steps):
        _sync(device)
        started = time.perf_counter()
        step()
        _sync(device)
        if index >= args.warmup:
            times.append(time.perf_counter() - started)
    step_s = statistics.median(times)

    sample_times = []
    generator = torch.Generator(device).manual_seed(0)
    for _ in range(args.rounds):
        _sync(device)
        started = time.perf_counter()
        with _autocast(device, args.precision):
            diffusion.sample(
                model,
                args.sample_batch,
                image_size=size,
                channels=channels,
                steps=args.sample_steps,
                generator=generator,
            )
        _sync(device)
        sample_times.append(time.perf_counter() - started)
    sample_s = statistics.median(sample_times)
    per_image_step = sample_s / (args.sample_batch * args.sample_steps)
    row = {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "batch": batch,
        "train_step_ms": round(step_s * 1e3, 2),
        "train_images_per_s": round(batch / step_s, 2),
        "sample_batch": args.sample_batch,
        "sample_steps": args.sample_steps,
        "sampling_ms_per_image_step": round(per_image_step * 1e3, 4),
        "sampling_images_per_s": round(args.sample_batch / sample_s, 2),  # at sample_steps
        # 50,000 samples x 100 DDIM steps, Table 1's evaluation, at this speed on one device
        "table1_eval_hours": round(per_image_step * 50_000 * 100 / 3600, 2),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--models", default=None, help="default: ddpm_small,ddpm")
    parser.add_argument("--batch-small", type=int, default=64)
    parser.add_argument("--batch-ddpm", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--sample-batch", type=int, default=16)
    parser.add_argument("--sample-steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="default: results/bench/diffusion.json")
    parser.add_argument(
        "--smoke", action="store_true", help="a few steps at tiny sizes, to a temporary folder"
    )
    args = parser.parse_args()
    if args.smoke:
        args.models = args.models or "ddpm_small"  # the paper's UNet: 36M parameters on a CPU
        args.batch_small = args.batch_ddpm = args.sample_batch = 1
        args.warmup, args.steps, args.sample_steps, args.rounds = 0, 1, 1, 1
        args.out = args.out or str(Path(tempfile.mkdtemp(prefix="bench_smoke_")) / "diff.json")
    args.out = args.out or "results/bench/diffusion.json"
    args.models = args.models or "ddpm_small,ddpm"
    device = torch.device(args.device)
    batches = {"ddpm_small": args.batch_small, "ddpm": args.batch_ddpm}
    rows = [bench_model(name, batches[name], args, device) for name in args.models.split(",")]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "what": "DDPM training images/s (loss, backward, clip, Adan(AGR) step, EMA update) and "
        "DDIM sampling ms per image per step; medians",
        "precision": args.precision,
        "environment": environment(device),
        "results": rows,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
