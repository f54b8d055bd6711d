"""ALBERT pre-training (Table 3): the model presets, the masked-positions MLM head against
transformers' own loss, the SOP/MLM metrics against a hand-computed batch (and summed over
two processes), their prediction statistics against numpy/scipy, the task's build(cfg) with
a few optimizer steps, and end-to-end runs."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import text_fixtures
import torch
import torch.nn.functional as F
from helpers import run_cli, run_folder_of
from pretraining_metric_worker import (
    VOCAB,
    FixedLogits,
    halves,
    hand_batch,
    hand_metrics,
    rank_worker,
)
from reference import prediction_statistics_reference
from torch.utils.data import DataLoader, DistributedSampler
from transformers import AlbertForPreTraining

from agr_suite.core.config import RunConfig, compose, preset
from agr_suite.engine.task_parts import count_parameters
from agr_suite.pretraining.albert import build_albert
from agr_suite.pretraining.build import build
from agr_suite.pretraining.metrics import PretrainingEvaluator

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are too small to gain from intra-op threads, and on a busy machine a
    parallel region waits for its slowest thread: one thread keeps each test to seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- model


def albert_parameters(V: int, P: int, E: int, H: int, inner: int) -> int:
    """ALBERT's parameter count by hand: one shared layer, decoder tied to the embeddings."""
    embeddings = V * E + P * E + 2 * E + 2 * E  # words, positions, 2 token types, LayerNorm
    mapping = E * H + H  # embedding -> hidden projection
    attention = 4 * (H * H + H) + 2 * H  # q, k, v, output, LayerNorm
    feed_forward = (H * inner + inner) + (inner * H + H) + 2 * H
    pooler = H * H + H
    mlm_head = (H * E + E) + 2 * E + V  # dense, LayerNorm, output bias (weights tied)
    sop_head = 2 * H + 2
    return embeddings + mapping + attention + feed_forward + pooler + mlm_head + sop_head


@pytest.mark.parametrize(
    "name, sizes",
    [
        # docs/provenance.md, Table 3: embedding 24, hidden 64, feed-forward 256, 6 layers, 1 head
        ("albert_tiny", dict(E=24, H=64, inner=256, layers=6, heads=1)),
        # ALBERT-base: embedding 128, hidden 768, feed-forward 3072, 12 layers, 12 heads
        ("albert_base", dict(E=128, H=768, inner=3072, layers=12, heads=12)),
    ],
)
def test_model_configs_have_the_published_sizes(name, sizes):
    model = build_albert(preset("model", name), vocab_size=1000, max_length=64)
    config = model.config
    assert (config.embedding_size, config.hidden_size, config.intermediate_size) == (
        sizes["E"],
        sizes["H"],
        sizes["inner"],
    )
    assert (config.num_hidden_layers, config.num_attention_heads) == (
        sizes["layers"],
        sizes["heads"],
    )
    assert config.max_position_embeddings == 64 and config.vocab_size == 1000
    assert isinstance(model, AlbertForPreTraining)
    expected = albert_parameters(1000, 64, sizes["E"], sizes["H"], sizes["inner"])
    assert count_parameters(model) == expected


def test_unknown_model_option_is_refused():
    with pytest.raises(TypeError, match="hidden_sise"):
        build_albert(preset("model", "albert_tiny"), vocab_size=100, max_length=32, hidden_sise=8)


def _random_batch(generator, batch=4, length=32, positions=6, vocab=100):
    ids = torch.randint(5, vocab, (batch, length), generator=generator)
    mlm_positions = torch.stack(
        [torch.randperm(length - 1, generator=generator)[:positions] + 1 for _ in range(batch)]
    )
    mlm_positions[:, -2:] = 0  # padded slots
    labels = torch.full((batch, length), -100)
    real = mlm_positions[:, :-2]
    labels.scatter_(1, real, torch.randint(5, vocab, real.shape, generator=generator))
    return {
        "input_ids": ids,
        "token_type_ids": (torch.arange(length) >= length // 2).long().expand(batch, -1),
        "attention_mask": torch.ones(batch, length, dtype=torch.long),
        "labels": labels,
        "mlm_positions": mlm_positions,
        "sentence_order_label": torch.randint(0, 2, (batch,), generator=generator),
    }


def test_masked_positions_head_gives_transformers_loss_and_gradients():
    torch.manual_seed(0)
    model = (
        build_albert(preset("model", "albert_tiny"), vocab_size=100, max_length=32).double().eval()
    )
    batch = _random_batch(torch.Generator().manual_seed(1))
    full = {k: v for k, v in batch.items() if k != "mlm_positions"}

    reference = AlbertForPreTraining.forward(model, **full)  # transformers' own computation
    reference.loss.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    ours = model(**batch)
    ours.loss.backward()

    torch.testing.assert_close(ours.loss, reference.loss)
    assert ours.prediction_logits.shape == (4, 6, 100)
    for name, param in model.named_parameters():
        if name in expected:
            torch.testing.assert_close(param.grad, expected[name], msg=name)


# --------------------------------------------------------------------------- metrics


def test_metrics_match_a_hand_computed_batch():
    model, batch = hand_batch()
    evaluator = PretrainingEvaluator(torch.device("cpu"), vocab_size=VOCAB)
    for half in halves(batch):  # two batches: the sums carry over
        evaluator.update(model, half)
    got = evaluator.compute()
    assert set(got) == set(hand_metrics())
    for key, value in hand_metrics().items():
        assert got[key] == pytest.approx(value, rel=1e-6), key
    # Nothing seen: zero counts, NaN for every rate
    empty = PretrainingEvaluator(torch.device("cpu"), vocab_size=VOCAB).compute()
    counts = {
        "sop_acc_examples",
        "sop_acc_pred_classes",
        "mlm_acc_examples",
        "mlm_acc_pred_classes",
    }
    assert all(empty[k] == 0 for k in counts)
    assert all(math.isnan(v) for k, v in empty.items() if k not in counts)


def test_the_training_unigram_scores_the_targets():
    """mlm_loss_unigram: each target's -log p under the given unigram, over the predicted
    tokens (the hand batch's targets are 1, 2, 4, 0, 1, 2)."""
    probs = [0.1, 0.2, 0.3, 0.15, 0.25]
    model, batch = hand_batch()
    evaluator = PretrainingEvaluator(torch.device("cpu"), VOCAB, torch.tensor(probs).log())
    evaluator.update(model, batch)
    got = evaluator.compute()
    expected = -sum(math.log(probs[t]) for t in (1, 2, 4, 0, 1, 2)) / 6
    assert got["mlm_loss_unigram"] == pytest.approx(expected, rel=1e-6)
    assert got["mlm_loss"] == pytest.approx(hand_metrics()["mlm_loss"], rel=1e-6)


def test_metrics_add_the_ranks_sums_before_dividing(monkeypatch):
    """Rank 0's ``compute`` with a stand-in for gloo/NCCL's SUM: each ``all_reduce`` adds what
    rank 1 passed to the same call (collectives pair up by call order)."""
    import torch.distributed as dist

    model, batch = hand_batch()
    ranks = [PretrainingEvaluator(torch.device("cpu"), vocab_size=VOCAB) for _ in range(2)]
    for evaluator, half in zip(ranks, halves(batch)):
        evaluator.update(model, half)
    sent: list[torch.Tensor] = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "all_reduce", lambda tensor: sent.append(tensor.clone()))
    ranks[1].compute()

    def all_reduce(tensor):
        tensor += sent.pop(0)

    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    got = ranks[0].compute()
    assert not sent  # every collective of rank 1 met one of rank 0
    for key, value in hand_metrics().items():
        assert got[key] == pytest.approx(value, rel=1e-6), key


def _scored_batch(sop_predicted, mlm_predicted, sop_labels, targets, vocab: int):
    """A batch whose example i has SOP label ``sop_labels[i]`` and MLM targets ``targets[i]``
    (-100: a padded slot) at positions 1.., and a model whose argmax predictions are
    ``sop_predicted`` and ``mlm_predicted`` (logit 3 for the prediction, 0 elsewhere)."""
    n, slots = targets.shape
    sop = 3.0 * F.one_hot(torch.as_tensor(sop_predicted), 2).float()
    mlm = 3.0 * F.one_hot(torch.as_tensor(mlm_predicted), vocab).float()
    valid = torch.as_tensor(targets != -100)
    positions = torch.where(valid, torch.arange(1, slots + 1), 0)
    labels = torch.full((n, slots + 1), -100)
    labels[:, 1:] = torch.as_tensor(targets)
    batch = {
        "input_ids": torch.arange(n).unsqueeze(1).expand(n, slots + 1).clone(),
        "attention_mask": torch.ones(n, slots + 1, dtype=torch.long),
        "token_type_ids": torch.zeros(n, slots + 1, dtype=torch.long),
        "labels": labels,
        "mlm_positions": positions,
        "sentence_order_label": torch.as_tensor(sop_labels),
    }
    return FixedLogits(sop, mlm), batch


def _predictors(sop_labels, targets, vocab, rng):
    return {
        "constant": (np.ones_like(sop_labels), np.full_like(targets, 7)),
        "perfect": (sop_labels, np.where(targets == -100, 0, targets)),
        "random": (rng.integers(0, 2, sop_labels.shape), rng.integers(0, vocab, targets.shape)),
    }


@pytest.mark.parametrize("predictor", ["constant", "perfect", "random"])
def test_prediction_statistics_match_numpy_and_scipy(predictor):
    rng = np.random.default_rng(0)
    vocab, n, slots = 12, 40, 6
    sop_labels = rng.integers(0, 2, n)
    # targets from tokens 2..11 only, skewed (tokens 0 and 1, like [PAD] and [CLS], never are)
    shares = np.arange(10, 0, -1) / np.arange(10, 0, -1).sum()
    targets = 2 + rng.choice(10, size=(n, slots), p=shares)
    targets[rng.random((n, slots)) < 0.3] = -100
    sop_predicted, mlm_predicted = _predictors(sop_labels, targets, vocab, rng)[predictor]
    model, batch = _scored_batch(sop_predicted, mlm_predicted, sop_labels, targets, vocab)
    evaluator = PretrainingEvaluator(torch.device("cpu"), vocab_size=vocab)
    for part in ({k: v[:15] for k, v in batch.items()}, {k: v[15:] for k, v in batch.items()}):
        evaluator.update(model, part)
    got = evaluator.compute()

    valid = targets != -100
    expected = {
        **prediction_statistics_reference("sop_acc", sop_predicted, sop_labels, 2),
        **prediction_statistics_reference("mlm_acc", mlm_predicted[valid], targets[valid], vocab),
    }
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert got["mlm_acc_minority"] == 0  # tokens 0 and 1 are never a target
    assert got["sop_acc_majority"] + got["sop_acc_minority"] == pytest.approx(100)
    if predictor == "constant":  # one class, no entropy, right exactly where it is the label
        assert got["sop_acc_pred_classes"] == got["mlm_acc_pred_classes"] == 1
        assert got["sop_acc_pred_entropy"] == got["mlm_acc_pred_entropy"] == 0
        assert got["sop_acc"] == pytest.approx(100 * np.mean(sop_labels == 1))
        assert got["mlm_acc"] == pytest.approx(100 * np.mean(targets[valid] == 7))
    if predictor == "perfect":
        assert got["sop_acc"] == got["mlm_acc"] == 100
        assert got["mlm_acc_pred_classes"] == len(np.unique(targets[valid]))


@pytest.mark.slow
def test_metrics_sum_exactly_over_ranks(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "rank0.json"
    # spawn, not fork (a forked child can deadlock on the parent's thread pools); the worker's
    # module imports torch and the evaluator only, so the children start quickly
    torch.multiprocessing.spawn(rank_worker, args=(2, port, str(out)), nprocs=2, join=True)
    got = json.loads(out.read_text())
    for key, value in hand_metrics().items():
        assert got[key] == pytest.approx(value, rel=1e-6), key


# --------------------------------------------------------------------------- task


def _cfg(data_dir: Path, *overrides: str) -> RunConfig:
    return compose(
        [
            "model=albert_tiny",
            "dataset=pydoc",
            "dataset.max_length=64",
            "dataset.max_predictions=10",
            f"paths.data_dir='{data_dir}'",
            *overrides,
        ]
    )


@pytest.fixture(scope="module")
def pydoc_parts(tmp_path_factory):
    torch.manual_seed(0)
    return build(_cfg(tmp_path_factory.mktemp("data")))


def test_build_gives_the_engine_what_it_needs(pydoc_parts):
    parts = pydoc_parts
    assert parts.primary_metric == "sop_acc" and not parts.minimize
    info = parts.info
    assert info["params"] == count_parameters(parts.model)
    assert info["vocab_size"] == parts.model.config.vocab_size
    assert info["train_size"] == len(parts.train_set) > 500
    assert info["eval_size"] == len(parts.eval_set) > 50
    assert 3 < info["tokens_per_example"] <= 64
    assert "wordpiece" in info["tokenizer"]
    # The engine's loaders: a DistributedSampler and PyTorch's default collate.
    sampler = DistributedSampler(parts.train_set, num_replicas=1, rank=0, shuffle=True, seed=0)
    batch = next(iter(DataLoader(parts.train_set, batch_size=8, sampler=sampler)))
    assert parts.batch_size(batch) == 8
    assert batch["input_ids"].shape == (8, 64) and batch["mlm_positions"].shape == (8, 10)
    assert torch.isfinite(parts.loss(parts.model, batch))
    evaluator = parts.make_evaluator(torch.device("cpu"))
    parts.model.eval()
    for eval_batch in DataLoader(parts.eval_set, batch_size=32):
        evaluator.update(parts.model, eval_batch)
    metrics = evaluator.compute()
    assert set(metrics) == {*hand_metrics(), "mlm_loss_unigram"}
    # Every example and every predicted token counted once, over the vocabulary's tokens
    assert metrics["sop_acc_examples"] == len(parts.eval_set)
    assert metrics["mlm_acc_examples"] == int((parts.eval_set.tensors["labels"] != -100).sum())
    assert 1 <= metrics["mlm_acc_pred_classes"] <= info["vocab_size"]
    assert metrics["mlm_acc_minority"] == 0  # [PAD] is never a target
    # An untrained model: SOP near chance, MLM loss near log(vocabulary size).
    assert 20 < metrics["sop_acc"] < 80
    assert abs(metrics["mlm_loss"] - math.log(info["vocab_size"])) < 1.0


def test_a_few_adamw_steps_lower_the_loss(pydoc_parts):
    parts = pydoc_parts
    model = parts.model.train()
    torch.manual_seed(1)
    batch = next(iter(DataLoader(parts.train_set, batch_size=8, shuffle=True)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(10):
        loss = parts.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # from ~log(vocabulary) = 8.5 + SOP's log 2: memorising one batch, it falls step by step
    assert losses[-1] < losses[0] - 1.0, losses
    assert sum(b < a for a, b in zip(losses, losses[1:])) >= 8, losses


def test_unigram_bias_starts_the_model_at_the_training_texts_token_shares(tmp_path):
    torch.manual_seed(0)
    parts = build(_cfg(tmp_path, "model.mlm_bias_init=unigram"))
    vocab = parts.model.config.vocab_size
    counts = Counter(
        int(t) for p in parts.train_set.pairs for s in (p.first, p.second) for t in s.ids
    )
    shares = np.array([counts.get(t, 0) + 0.5 for t in range(vocab)])
    shares /= shares.sum()
    bias = parts.model.predictions.decoder.bias.detach().double().numpy()
    np.testing.assert_allclose(bias, np.log(shares), rtol=0, atol=1e-6)
    # Untrained, the model scores what the add-half unigram model scores on the test targets
    # (the word-embedding logits, ~N(0, 0.1), barely move it), far below log(vocabulary).
    targets = parts.eval_set.tensors["labels"]
    targets = targets[targets != -100].numpy()
    unigram_loss = -np.log(shares[targets]).mean()
    evaluator = parts.make_evaluator(torch.device("cpu"))
    parts.model.eval()
    for batch in DataLoader(parts.eval_set, batch_size=64):
        evaluator.update(parts.model, batch)
    metrics = evaluator.compute()
    assert metrics["mlm_loss"] == pytest.approx(unigram_loss, abs=0.05)
    assert metrics["mlm_loss"] < math.log(vocab) - 1.0
    # and it answers the most common training token everywhere: the majority baseline
    assert metrics["mlm_acc_pred_classes"] == 1


def test_initializer_range_sets_the_initial_weights_spread():
    for spread in (0.02, 0.1):
        cfg = dataclasses.replace(preset("model", "albert_tiny"), initializer_range=spread)
        model = build_albert(cfg, vocab_size=2000, max_length=64)
        weights = model.albert.encoder.albert_layer_groups[0].albert_layers[0].ffn.weight
        assert weights.std().item() == pytest.approx(spread, rel=0.05)


def test_training_draws_are_reproducible_with_dataloader_workers(pydoc_parts):
    def first_batches(seed: int):
        generator = torch.Generator().manual_seed(seed)
        loader = DataLoader(pydoc_parts.train_set, batch_size=4, num_workers=2, generator=generator)
        batches = iter(loader)
        return [next(batches) for _ in range(3)]

    a, b, c = first_batches(0), first_batches(0), first_batches(1)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    assert not all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, c))


# --------------------------------------------------------------------------- end to end


FAST = [
    "model=albert_tiny",
    "trainer.epochs=2",
    "trainer.limit_batches=3",
    "trainer.batch_size=8",
    "trainer.devices=cpu",
    "trainer.num_workers=0",
    "scheduler=constant",
    "dataset.max_length=64",
    "dataset.max_predictions=10",
]


def _check_run_folder(folder: Path) -> None:
    assert (folder / "config.yaml").is_file()
    assert (folder / "checkpoints" / "last.pt").is_file()
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "completed" and results["epochs_completed"] == 2
    assert set(results["metrics"]) == {*hand_metrics(), "mlm_loss_unigram"}
    assert set(results["best"]) >= set(hand_metrics())
    history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(0 <= h["sop_acc"] <= 100 and math.isfinite(h["mlm_loss"]) for h in history)
    assert all(set(h) >= set(hand_metrics()) for h in history)  # every evaluation


@pytest.mark.slow
def test_end_to_end_run_on_pydoc(tmp_path):
    args = [*FAST, "dataset=pydoc", f"paths.runs={tmp_path}/runs"]
    args += [f"paths.data_dir={tmp_path}/data"]
    done = run_cli(args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    _check_run_folder(run_folder_of(args))


@pytest.mark.slow
def test_end_to_end_run_on_wikitext_fixture_files(tmp_path):
    text_fixtures.write_classic(tmp_path / "data", "raw")
    args = [
        *FAST,
        "dataset=wikitext2",
        "dataset.download=false",
        "dataset.vocab_size=400",
        f"paths.runs={tmp_path}/runs",
        f"paths.data_dir={tmp_path}/data",
    ]
    done = run_cli(args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    _check_run_folder(run_folder_of(args))


@pytest.mark.slow
def test_missing_wikitext_stops_the_run_with_the_staging_message(tmp_path):
    done = run_cli(
        [
            *FAST,
            "dataset=wikitext2",
            "dataset.download=false",
            f"paths.runs={tmp_path}/runs",
            f"paths.data_dir={tmp_path}/data",
        ],
        tmp_path,
    )
    assert done.returncode != 0
    assert "WikiText-2 (raw) not found" in done.stderr + done.stdout
