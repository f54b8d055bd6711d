"""AGR's effect (or that of the run's GC or AGC) per parameter tensor at a run's checkpoint.

    scripts/agr_effect.py RUN_DIR [--checkpoint last|best] [--batches 1]

Rebuilds the run's task and optimizer from RUN_DIR/config.yaml, loads the checkpoint (weights
and optimizer state), takes the gradient of the next training batch(es), and prints for every
parameter tensor: its kind, size, the share of its gradient's L1 mass AGR removes (AGR as the
run's config sets it, dose and null included: the handle's statistics; a GC or AGC run's own
transform; AGR for a baseline run) and the relative
change AGR makes to the optimizer's update, ||u_AGR - u|| / ||u||, from the same state
(agr.update_change.measure, in float64), at the config's learning rate (a schedule may have
decayed it to 0 by the checkpoint). Nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--checkpoint", default="last", choices=("last", "best"))
    parser.add_argument("--batches", type=int, default=1, help="batches summed into the gradient")
    args = parser.parse_args(argv)

    import dataclasses
    import json

    import torch
    from torch.utils.data import DataLoader

    import agr
    from agr.update_change import measure, parameter_kinds
    from agr_suite.core.config import read_run_config
    from agr_suite.engine import checkpoint
    from agr_suite.engine.optimizer import build_from_config
    from agr_suite.registry import build_task

    config, ckpt = (
        args.run_dir / "config.yaml",
        args.run_dir / "checkpoints" / f"{args.checkpoint}.pt",
    )
    for path in (config, ckpt):
        if not path.is_file():
            print(
                f"error: {path} does not exist; give a run folder with a checkpoint",
                file=sys.stderr,
            )
            return 2
    cfg = read_run_config(config)
    parts = build_task(cfg)
    model = parts.model
    state = checkpoint.load(ckpt, map_location="cpu")
    model.load_state_dict(state["model"])
    name = cfg.optimizer.name
    family, transform = agr.optim.split_name(name)
    name = name if transform else f"{family}_agr"  # a baseline run: measure AGR on it

    world_size = 1  # the run's, for a scaled lr (optimizer.lr_scale_batch)
    results = args.run_dir / "results.json"
    if results.is_file():
        world_size = json.loads(results.read_text()).get("environment", {}).get("world_size", 1)
    optimizer = build_from_config(
        dataclasses.replace(cfg.optimizer, agr_until_epoch=None),
        model,
        steps_per_epoch=1,
        seed=cfg.seed,
        name=name,
        total_batch=cfg.trainer.batch_size * cfg.trainer.accumulate * world_size,
    )
    peak_lrs = [group["lr"] for group in optimizer.param_groups]  # the config's (or default)
    saved = dict(state["optimizer"])
    saved.pop("agr", None)  # AGR on, whatever the run's schedule had reached
    optimizer.load_state_dict(saved)
    for group, lr in zip(optimizer.param_groups, peak_lrs):  # the schedule may have reached 0
        group["lr"] = lr

    torch.manual_seed(cfg.seed)
    loader = DataLoader(
        parts.train_set,
        batch_size=cfg.trainer.batch_size,
        shuffle=True,
        collate_fn=parts.collate,
    )
    model.train()
    optimizer.zero_grad(set_to_none=True)
    for index, batch in enumerate(loader):
        if index == args.batches:
            break
        (parts.loss(model, batch) / args.batches).backward()

    names = {id(p): n for n, p in model.named_parameters()}
    kinds = parameter_kinds(model)
    handle = agr.handle_of(optimizer)
    changes = measure(optimizer, handle)
    trained = [p for p in model.parameters() if p.grad is not None]
    optimizer.step()  # AGR's hook records what it removed from each tensor
    removed = {p: handle.last_stats.per_param.get(names[id(p)], 0.0) for p in trained}

    print(f"# {args.run_dir} ({args.checkpoint}.pt, epoch {state.get('epoch')}), {name}")
    print("| parameter | kind | size | removed L1 fraction | update change |")
    print("|---|---|---|---|---|")
    for param in model.parameters():
        if param in removed:
            label = names[id(param)]
            change = changes.get(param)
            shown = "—" if change is None else f"{change:.3g}"
            print(
                f"| {label} | {kinds.get(label, 'other')} | {param.numel()} | "
                f"{removed[param]:.3g} | {shown} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
