"""Time optimizer.step() with and without AGR, side by side in one process.

For each parameter set (a CIFAR ResNet-18, 11.2M parameters, and a ViT-S block stack)
and each optimizer implementation, the plain and the AGR optimizer (and AGR alone, per
backend) take turns step by step, so both see the same machine load; the medians and
their ratio are written to results/bench/optimizer_step.json.

    python scripts/bench_optimizer.py [--steps 30] [--warmup 5] [--device cpu|cuda] [--smoke]

``--smoke``: one step without warm-up (a check that the script still runs, timing nothing),
written to a temporary folder unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import timm
import torch
import torchvision

import agr
from agr import regularizer
from agr_suite.engine.machine import environment

ROOT = Path(__file__).resolve().parents[1]


def cifar_resnet18() -> torch.nn.Module:
    model = torchvision.models.resnet18(num_classes=100)
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # CIFAR stem, no max-pool
    model.maxpool = torch.nn.Identity()
    return model


def vit_small_blocks() -> torch.nn.Module:
    # ViT-S/16's 12 transformer blocks (embed 384, 6 heads, MLP 1536): 21.3M parameters.
    return torch.nn.Sequential(
        *[timm.models.vision_transformer.Block(384, 6, mlp_ratio=4.0) for _ in range(12)]
    )


MODELS = {"resnet18_cifar": cifar_resnet18, "vit_s_blocks": vit_small_blocks}


def fresh_params(model: torch.nn.Module, device: str, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    params = []
    for p in model.parameters():
        q = torch.nn.Parameter(p.detach().clone().to(device))
        q.grad = (torch.randn(p.shape, generator=gen) * 1e-3).to(device)
        params.append(q)
    return params


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleaved(fns: dict, steps: int, warmup: int, device: str) -> dict[str, float]:
    """Median milliseconds of each callable, run in turns so they share the machine's load."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + steps):
        for name, fn in fns.items():
            t = timed(fn, device)
            if i >= warmup:
                times[name].append(t)
    return {name: statistics.median(ts) * 1e3 for name, ts in times.items()}


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(
        v.numel() * v.element_size()
        for s in optimizer.state.values()
        for v in s.values()
        if torch.is_tensor(v)
    )


def bench_model(name: str, device: str, steps: int, warmup: int) -> list[dict]:
    model = MODELS[name]()
    numel = sum(p.numel() for p in model.parameters())
    rows = []
    combos = [("adamw", impl) for impl in ("fused", "foreach", "loop")]
    combos += [("adan", impl) for impl in ("foreach", "loop")]
    for family, impl in combos:
        base = agr.build_optimizer(family, fresh_params(model, device, 0), impl=impl)
        with_agr = agr.build_optimizer(f"{family}_agr", fresh_params(model, device, 0), impl=impl)
        agr.handle_of(with_agr).track_stats = False
        medians = interleaved(
            {"plain": base.step, "agr": with_agr.step}, steps=steps, warmup=warmup, device=device
        )
        rows.append(
            {
                "model": name,
                "params": numel,
                "optimizer": family,
                "impl": impl,
                "plain_ms": round(medians["plain"], 3),
                "agr_ms": round(medians["agr"], 3),
                "ratio": round(medians["agr"] / medians["plain"], 3),
                "extra_state_bytes": state_bytes(with_agr) - state_bytes(base),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    # AGR alone, per backend, beside the fused AdamW step it is added to.
    fused = agr.build_optimizer("adamw", fresh_params(model, device, 1), impl="fused")
    grads = [p.grad for p in fresh_params(model, device, 2) if p.dim() >= 2]
    backends = ["kernel", "torch"] if device == "cpu" else ["foreach", "torch"]
    if device == "cpu" and not regularizer._kernel_available():
        backends.remove("kernel")
    fns = {"fused_adamw_step": fused.step}
    for backend in backends:
        fns[f"agr_{backend}"] = lambda b=backend: agr.regularize_(grads, backend=b)
    medians = interleaved(fns, steps=steps, warmup=warmup, device=device)
    step_ms = medians.pop("fused_adamw_step")
    for key, ms in medians.items():
        rows.append(
            {
                "model": name,
                "params": numel,
                "optimizer": "agr_alone",
                "impl": key.removeprefix("agr_"),
                "agr_ms": round(ms, 3),
                "fused_adamw_ms": round(step_ms, 3),
                "ratio_vs_fused_adamw": round((step_ms + ms) / step_ms, 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument(
        "--out", default=None, help="default: results/bench/optimizer_step[_cuda].json"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a few steps at tiny sizes, to a temporary folder"
    )
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.warmup = 1, 0
        args.out = args.out or str(Path(tempfile.mkdtemp(prefix="bench_smoke_")) / "step.json")
    torch.manual_seed(0)
    if args.device == "cpu":
        regularizer._kernel_available()  # build or load the kernel before timing
    rows = []
    for name in args.models.split(","):
        rows += bench_model(name, args.device, args.steps, args.warmup)
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    out = (
        Path(args.out) if args.out else ROOT / "results" / "bench" / f"optimizer_step{suffix}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "what": "median ms of optimizer.step(), plain vs AGR, interleaved in one process",
        "steps": args.steps,
        "warmup": args.warmup,
        "environment": {
            **environment(torch.device(args.device)),
            "agr_cpu_kernel": regularizer._kernel is not None,
        },
        "results": rows,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
