"""Training tokens/s of ALBERT pre-training steps: albert_tiny and albert_base side by side.

One step = forward (MLM on the masked positions + SOP, as agr_suite.pretraining.build computes the
loss), backward, ``torch.optim.AdamW.step()`` (lr 1e-4, weight decay 0.01, the Table 3
settings; ``--agr`` attaches AGR) and ``zero_grad``. The batch has the pre-training format at
full length: random ids from a 30,522-entry vocabulary (Table 3's), two segments, every
position attended, ``round(0.15 * seq_len)`` (at most 75) masked positions per sequence; the
data pipeline is not timed. Tokens/s counts every position of the batch (batch x seq_len).

After ``--warmup`` untimed steps per model, ``--rounds`` x ``--steps`` timed steps alternate
between the models step by step, so all see the same machine load; each model's median step
time gives its tokens/s. ``--heads masked,full`` also times transformers' own head, which
projects every position onto the vocabulary. Output: results/bench/albert_tokens.json (with
--device cuda or --precision bf16, a file named after them).

    python scripts/bench_albert.py [--models albert_tiny,albert_base] [--batch-size 8]
        [--seq-len 128] [--steps 3] [--rounds 3] [--warmup 2] [--heads masked]
        [--device cpu|cuda] [--precision fp32|bf16] [--agr] [--threads N] [--smoke]

``--smoke``: one step per model at batch 1 and 16 tokens, both heads (a check that the script
still runs, timing nothing), written to a temporary folder unless ``--out`` is given.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable

import torch

import agr
from agr_suite import bench
from agr_suite.core.config import preset
from agr_suite.engine.task_parts import count_parameters
from agr_suite.pretraining.albert import build_albert

VOCAB = 30522


def pretraining_batch(batch: int, length: int, vocab: int, generator: torch.Generator) -> dict:
    predictions = min(75, round(0.15 * length))
    ids = torch.randint(5, vocab, (batch, length), generator=generator)
    positions = torch.stack(
        [torch.randperm(length - 1, generator=generator)[:predictions] + 1 for _ in range(batch)]
    )
    labels = torch.full((batch, length), -100)
    labels.scatter_(1, positions, ids.gather(1, positions))
    return {
        "input_ids": ids,
        "token_type_ids": (torch.arange(length) >= length // 2).long().expand(batch, -1).clone(),
        "attention_mask": torch.ones(batch, length, dtype=torch.long),
        "labels": labels,
        "mlm_positions": positions,
        "sentence_order_label": torch.randint(0, 2, (batch,), generator=generator),
    }


def training_step(name: str, head: str, args) -> tuple[torch.nn.Module, Callable[[], float]]:
    """One model with its optimizer and batch on the device; (the model, its step)."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_albert(preset("model", name), vocab_size=VOCAB, max_length=args.seq_len)
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    if args.agr:
        agr.attach(optimizer, track_stats=False)
    batch = pretraining_batch(
        args.batch_size, args.seq_len, VOCAB, torch.Generator().manual_seed(0)
    )
    if head == "full":  # transformers' head: every position projected onto the vocabulary
        batch.pop("mlm_positions")
    batch = {k: v.to(device) for k, v in batch.items()}
    amp_dtype = torch.bfloat16 if args.precision == "bf16" else None

    def step() -> None:
        with torch.autocast(device.type, amp_dtype, enabled=amp_dtype is not None):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return model, bench.timed(step, device)


def row(name: str, head: str, model: torch.nn.Module, times: list[float], args) -> dict:
    median = statistics.median(times)
    return {
        "model": name,
        "mlm_head": head,
        "params": count_parameters(model),
        "median_step_s": round(median, 5),
        "tokens_per_s": round(args.batch_size * args.seq_len / median, 1),
        "samples_per_s": round(args.batch_size / median, 2),
        "step_times_s": [round(t, 5) for t in times],
    }


def main() -> None:
    parser = bench.parser(__doc__, rounds=3)
    parser.add_argument("--models", default="albert_tiny,albert_base")
    parser.add_argument("--heads", default="masked", help="masked, full, or masked,full")
    parser.add_argument("--batch-size", type=int, default=8)  # Table 3's batch
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--agr", action="store_true", help="attach AGR to the AdamW")
    smoke = dict(batch_size=1, seq_len=16, heads="masked,full", steps=1, rounds=1, warmup=0)
    args = bench.parse(parser, smoke=smoke)
    environment = bench.machine(args.device)
    contenders = {
        (name, head): training_step(name, head, args)
        for name in args.models.split(",")
        for head in args.heads.split(",")
    }
    measures = {key: measure for key, (_, measure) in contenders.items()}
    times = bench.in_turns(measures, args.steps * args.rounds, args.warmup)
    rows = [row(*key, model, times[key], args) for key, (model, _) in contenders.items()]
    for result in rows:
        print(json.dumps({k: v for k, v in result.items() if k != "step_times_s"}), flush=True)
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    suffix += "" if args.precision == "fp32" else f"_{args.precision}"
    bench.write_report(
        bench.out_path(args, f"albert_tokens{suffix}.json"),
        {
            "what": "ALBERT pre-training training steps (forward MLM+SOP, backward, AdamW step), "
            "tokens/s = batch x seq_len / median step time; models alternated step by step",
            "settings": {
                "device": args.device,
                "precision": args.precision,
                "batch_size": args.batch_size,
                "seq_len": args.seq_len,
                "vocab_size": VOCAB,
                "masked_positions": min(75, round(0.15 * args.seq_len)),
                "timed_steps": args.steps * args.rounds,
                "warmup_steps": args.warmup,
                "optimizer": {"name": "adamw", "lr": 1e-4, "weight_decay": 0.01, "agr": args.agr},
            },
            "environment": environment,
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
