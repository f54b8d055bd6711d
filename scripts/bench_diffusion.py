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

import json
import statistics

import torch

import agr
from agr_suite import bench
from agr_suite.core.config import preset
from agr_suite.diffusion.process import Diffusion
from agr_suite.diffusion.unet import build_unet
from agr_suite.engine.ema import EMA

SHAPES = {"ddpm_small": (16, 1), "ddpm": (32, 3)}


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
    generator = torch.Generator(device).manual_seed(0)

    def step() -> None:
        with _autocast(device, args.precision):
            loss = diffusion.loss(model, images)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update_parameters(model)

    def sample() -> None:
        with _autocast(device, args.precision):
            shape = {"image_size": size, "channels": channels, "steps": args.sample_steps}
            diffusion.sample(model, args.sample_batch, generator=generator, **shape)

    step_s = statistics.median(bench.repeat(step, args.steps, args.warmup, device))
    sample_s = statistics.median(bench.repeat(sample, args.rounds, device=device))
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
    parser = bench.parser(__doc__, rounds=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--models", default="ddpm_small,ddpm")
    parser.add_argument("--batch-small", type=int, default=64)
    parser.add_argument("--batch-ddpm", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--sample-batch", type=int, default=16)
    parser.add_argument("--sample-steps", type=int, default=5)
    # --smoke: the small UNet alone (the paper's has 36M parameters, slow on a CPU)
    smoke = dict(models="ddpm_small", batch_small=1, sample_batch=1, warmup=0, steps=1)
    args = bench.parse(parser, smoke={**smoke, "sample_steps": 1, "rounds": 1})
    device = torch.device(args.device)
    environment = bench.machine(device)
    batches = {"ddpm_small": args.batch_small, "ddpm": args.batch_ddpm}
    rows = [bench_model(name, batches[name], args, device) for name in args.models.split(",")]
    bench.write_report(
        bench.out_path(args, "diffusion.json"),
        {
            "what": "DDPM training images/s (loss, backward, clip, Adan(AGR) step, EMA update) "
            "and DDIM sampling ms per image per step; medians",
            "precision": args.precision,
            "environment": environment,
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
