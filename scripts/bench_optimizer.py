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

import json
import statistics

import timm
import torch
import torchvision

import agr
from agr_suite import bench


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


def median_ms(fns: dict, args) -> dict[str, float]:
    """Median milliseconds of each callable, called in turns."""
    measures = {name: bench.timed(fn, args.device) for name, fn in fns.items()}
    times = bench.in_turns(measures, args.steps, args.warmup)
    return {name: statistics.median(values) * 1e3 for name, values in times.items()}


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(
        v.numel() * v.element_size()
        for s in optimizer.state.values()
        for v in s.values()
        if torch.is_tensor(v)
    )


def plain_vs_agr(name: str, model: torch.nn.Module, args) -> list[dict]:
    """optimizer.step() of each optimizer and implementation, plain and with AGR."""
    rows = []
    for family, impls in (("adamw", ("fused", "foreach", "loop")), ("adan", ("foreach", "loop"))):
        for impl in impls:
            base = agr.build_optimizer(family, fresh_params(model, args.device, 0), impl=impl)
            params = fresh_params(model, args.device, 0)
            with_agr = agr.build_optimizer(f"{family}_agr", params, impl=impl)
            agr.handle_of(with_agr).track_stats = False
            ms = median_ms({"plain": base.step, "agr": with_agr.step}, args)
            rows.append(
                {
                    "model": name,
                    "params": sum(p.numel() for p in model.parameters()),
                    "optimizer": family,
                    "impl": impl,
                    "plain_ms": round(ms["plain"], 3),
                    "agr_ms": round(ms["agr"], 3),
                    "ratio": round(ms["agr"] / ms["plain"], 3),
                    "extra_state_bytes": state_bytes(with_agr) - state_bytes(base),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def agr_alone(name: str, model: torch.nn.Module, args, kernel: bool) -> list[dict]:
    """AGR's pass alone, per backend, beside the fused AdamW step it is added to."""
    fused = agr.build_optimizer("adamw", fresh_params(model, args.device, 1), impl="fused")
    grads = [p.grad for p in fresh_params(model, args.device, 2) if p.dim() >= 2]
    if args.device != "cpu":
        backends = ["foreach", "torch"]
    else:
        backends = ["kernel", "torch"] if kernel else ["torch"]
    fns = {"fused_adamw_step": fused.step}
    for backend in backends:
        fns[f"agr_{backend}"] = lambda b=backend: agr.regularize_(grads, backend=b)
    ms = median_ms(fns, args)
    step_ms = ms.pop("fused_adamw_step")
    rows = [
        {
            "model": name,
            "params": sum(p.numel() for p in model.parameters()),
            "optimizer": "agr_alone",
            "impl": key.removeprefix("agr_"),
            "agr_ms": round(value, 3),
            "fused_adamw_ms": round(step_ms, 3),
            "ratio_vs_fused_adamw": round((step_ms + value) / step_ms, 3),
        }
        for key, value in ms.items()
    ]
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = bench.parser(__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default=",".join(MODELS))
    args = bench.parse(parser, smoke={"steps": 1, "warmup": 0})
    torch.manual_seed(0)
    environment = bench.machine(args.device)  # loads AGR's CPU kernel before timing
    rows = []
    for name in args.models.split(","):
        model = MODELS[name]()
        rows += plain_vs_agr(name, model, args)
        rows += agr_alone(name, model, args, kernel=bool(environment["agr_cpu_kernel"]))
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    bench.write_report(
        bench.out_path(args, f"optimizer_step{suffix}.json"),
        {
            "what": "median ms of optimizer.step(), plain vs AGR, interleaved in one process",
            "steps": args.steps,
            "warmup": args.warmup,
            "environment": environment,
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
