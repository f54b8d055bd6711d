"""Training tokens/s of ALBERT pre-training steps: albert_tiny and albert_base side by side.

One step = forward (MLM on the masked positions + SOP, as agr_suite.pretraining.build computes the
loss), backward, ``torch.optim.AdamW.step()`` (lr 1e-4, weight decay 0.01, the Table 3
settings; ``--agr`` attaches AGR) and ``zero_grad``. The batch has the pre-training format at
full length: random ids from a 30,522-entry vocabulary (Table 3's), two segments, every
position attended, ``round(0.15 * seq_len)`` (at most 75) masked positions per sequence; the
data pipeline is not timed. Tokens/s counts every position of the batch (batch x seq_len).

After ``--warmup`` untimed steps per model, rounds of ``--steps`` timed steps alternate
between the models, so all see the same machine load; each model's median step time gives
its tokens/s. ``--heads masked,full`` also times transformers' own head, which projects every
position onto the vocabulary. Output: results/bench/albert_tokens.json (with --device cuda or
--precision bf16, a file named after them).

    python scripts/bench_albert.py [--models albert_tiny,albert_base] [--batch-size 8]
        [--seq-len 128] [--steps 3] [--rounds 3] [--warmup 2] [--heads masked]
        [--device cpu|cuda] [--precision fp32|bf16] [--agr] [--threads N] [--smoke]

``--smoke``: one step per model at batch 1 and 16 tokens, both heads (a check that the script
still runs, timing nothing), written to a temporary folder unless ``--out`` is given.
"""

from __future__ import annotations

import os

os.environ.update(
    HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled"
)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

import agr  # noqa: E402
from agr_suite.core.config import preset  # noqa: E402
from agr_suite.engine.machine import environment  # noqa: E402
from agr_suite.engine.task_parts import count_parameters  # noqa: E402
from agr_suite.pretraining.albert import build_albert  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
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


class Contender:
    """One model with its optimizer and batch, stepping in the benchmark's rounds."""

    def __init__(self, name: str, head: str, args: argparse.Namespace) -> None:
        self.name, self.head, self.args = name, head, args
        self.device = torch.device(args.device)
        torch.manual_seed(0)
        model_cfg = preset("model", name)
        self.model = build_albert(model_cfg, vocab_size=VOCAB, max_length=args.seq_len).to(
            self.device
        )
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.01)
        if args.agr:
            agr.attach(self.optimizer, track_stats=False)
        batch = pretraining_batch(
            args.batch_size, args.seq_len, VOCAB, torch.Generator().manual_seed(0)
        )
        if head == "full":  # transformers' head: every position projected onto the vocabulary
            batch.pop("mlm_positions")
        self.batch = {k: v.to(self.device) for k, v in batch.items()}
        self.times: list[float] = []

    def _autocast(self):
        if self.args.precision == "bf16":
            return torch.autocast(self.device.type, torch.bfloat16)
        return contextlib.nullcontext()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self) -> float:
        self._sync()
        started = time.perf_counter()
        with self._autocast():
            loss = self.model(**self.batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._sync()
        return time.perf_counter() - started

    def row(self) -> dict:
        median = statistics.median(self.times)
        tokens = self.args.batch_size * self.args.seq_len
        return {
            "model": self.name,
            "mlm_head": self.head,
            "params": count_parameters(self.model),
            "median_step_s": round(median, 5),
            "tokens_per_s": round(tokens / median, 1),
            "samples_per_s": round(self.args.batch_size / median, 2),
            "step_times_s": [round(t, 5) for t in self.times],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="albert_tiny,albert_base")
    parser.add_argument("--heads", default="masked", help="masked, full, or masked,full")
    parser.add_argument("--batch-size", type=int, default=8)  # Table 3's batch
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--agr", action="store_true", help="attach AGR to the AdamW")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="default: results/bench/albert_tokens*.json")
    parser.add_argument(
        "--smoke", action="store_true", help="a few steps at tiny sizes, to a temporary folder"
    )
    args = parser.parse_args()
    if args.smoke:
        args.batch_size, args.seq_len, args.heads = 1, 16, "masked,full"
        args.steps, args.rounds, args.warmup = 1, 1, 0
        args.out = args.out or str(Path(tempfile.mkdtemp(prefix="bench_smoke_")) / "albert.json")
    if args.threads:
        torch.set_num_threads(args.threads)

    contenders = [
        Contender(name, head, args)
        for name in args.models.split(",")
        for head in args.heads.split(",")
    ]
    for contender in contenders:
        for _ in range(args.warmup):
            contender.step()
    for _ in range(args.rounds):
        for contender in contenders:
            contender.times += [contender.step() for _ in range(args.steps)]
    rows = [c.row() for c in contenders]
    for row in rows:
        print(json.dumps({k: v for k, v in row.items() if k != "step_times_s"}), flush=True)

    suffix = "" if args.device == "cpu" else f"_{args.device}"
    suffix += "" if args.precision == "fp32" else f"_{args.precision}"
    out = Path(args.out) if args.out else ROOT / "results" / "bench" / f"albert_tokens{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "what": (
            "ALBERT pre-training training steps (forward MLM+SOP, backward, AdamW step), "
            "tokens/s = batch x seq_len / median step time; models alternated in rounds"
        ),
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
        "environment": {**environment(torch.device(args.device)), "cpu_count": os.cpu_count()},
        "results": rows,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
