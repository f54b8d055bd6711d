"""Text data for ALBERT pre-training (Table 3): corpora, tokenizers, MLM + SOP examples.

    data = build_pretraining_data(cfg.dataset, data_dir="data", seed=0)  # a TextDatasetConfig
    data.train_set, data.eval_set, data.tokenizer, data.info

Corpora: ``wikitext2`` (:mod:`.wikitext`) and the embedded ``pydoc`` (:mod:`.corpus`) and
``docstrings`` (:mod:`.docstrings`).
Tokenizers: :mod:`.tokenizer`. Examples and masking: :mod:`.pretraining`, :mod:`.masking`.
Absent data raises :class:`agr_suite.images.DatasetMissingError` with what to stage where.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from agr_suite.pretraining.config import TextDatasetConfig
from agr_suite.pretraining.text.corpus import Corpus, pydoc_corpus
from agr_suite.pretraining.text.docstrings import docstrings_corpus
from agr_suite.pretraining.text.masking import MaskingRule
from agr_suite.pretraining.text.pretraining import (
    FixedExamples,
    PretrainingExamples,
    SequenceFormat,
    segment_pairs,
    tokenize_documents,
)
from agr_suite.pretraining.text.tokenizer import build_tokenizer, check_spec, tokenizer_sha256
from agr_suite.pretraining.text.wikitext import load_wikitext2

__all__ = ["CORPORA", "PretrainingData", "build_pretraining_data", "load_corpus"]

CORPORA = ("wikitext2", "pydoc", "docstrings")


def load_corpus(
    name: str, *, data_dir: str | Path, download: bool = False, variant: str = "raw"
) -> Corpus:
    if name == "wikitext2":
        return load_wikitext2(data_dir, variant=variant, download=download)
    if name == "pydoc":
        return pydoc_corpus()
    if name == "docstrings":
        return docstrings_corpus()
    raise ValueError(f"unknown text corpus {name!r}; choose one of: {', '.join(CORPORA)}")


@dataclass
class PretrainingData:
    train_set: Dataset
    eval_set: Dataset
    tokenizer: Any
    form: SequenceFormat
    info: dict[str, Any]


def build_pretraining_data(
    s: TextDatasetConfig, *, data_dir: str | Path, seed: int
) -> PretrainingData:
    """Train and eval sets for the dataset config ``s``. ``seed`` lays out the training
    pairs; the eval set depends only on the data, ``eval_seed`` and ``eval_draws`` (that many
    layouts of the evaluation split, concatenated), so every run is scored on the same
    examples."""
    check_spec(s.tokenizer)
    corpus = load_corpus(s.name, data_dir=data_dir, download=s.download, variant=s.variant)
    eval_split = s.eval_split
    if eval_split == "train" or eval_split not in corpus.splits:
        choices = [k for k in corpus.splits if k != "train"]
        raise ValueError(f"eval_split={eval_split!r} is not valid; choose one of {choices}")
    tokenizer, description = build_tokenizer(
        s.tokenizer,
        corpus,
        vocab_size=s.vocab_size,
        lowercase=s.lowercase,
        data_dir=data_dir,
        download=s.download,
    )
    tokenizer_digest = tokenizer_sha256(tokenizer)  # before encoding sets truncation/padding
    masking = MaskingRule(
        mask_prob=s.mask_prob,
        max_ngram=s.max_ngram,
        max_predictions=s.max_predictions,
        mask_token_fraction=s.mask_token_fraction,
        random_token_fraction=s.random_token_fraction,
    )
    form = SequenceFormat.of(tokenizer, s.max_length, masking)

    def pairs(documents, pair_seed: int):
        return segment_pairs(
            documents,
            max_tokens=form.max_tokens,
            short_seq_prob=s.short_seq_prob,
            rng=np.random.default_rng(pair_seed),
        )

    train_pairs = pairs(tokenize_documents(tokenizer, corpus.splits["train"]), seed)
    eval_documents = tokenize_documents(tokenizer, corpus.splits[eval_split])
    # Draw k lays the split out and draws its swaps and masks from seed eval_seed + k: draw 0
    # is the whole evaluation set of eval_draws=1.
    draw_seeds = [s.eval_seed + k for k in range(s.eval_draws)]
    draw_pairs = [pairs(eval_documents, draw_seed) for draw_seed in draw_seeds]
    if not train_pairs or not draw_pairs[0]:
        raise ValueError(f"{corpus.name}: no sentence pairs in train or {eval_split}")
    eval_set = FixedExamples.concatenate(
        [FixedExamples(p, form, seed=draw_seed) for p, draw_seed in zip(draw_pairs, draw_seeds)]
    )
    train_tokens = sum(len(p.first) + len(p.second) + 3 for p in train_pairs)
    info = {
        "corpus": corpus.name,
        "corpus_source": corpus.source,
        "tokenizer": description,
        # What the numbers depend on, checkable on another machine: the tokenizer's full
        # serialised form (its tokenizer.json) and the text it was learned on and scored on.
        "tokenizer_sha256": tokenizer_digest,
        "corpus_sha256": corpus.digest("train", eval_split),
        "vocab_size": len(tokenizer),
        "max_length": form.max_length,
        "train_size": len(train_pairs),
        "eval_size": len(eval_set),  # all draws' examples
        "eval_draws": s.eval_draws,
        "eval_split": eval_split,
        "tokens_per_example": round(train_tokens / len(train_pairs), 1),
    }
    return PretrainingData(
        train_set=PretrainingExamples(train_pairs, form),
        eval_set=eval_set,
        tokenizer=tokenizer,
        form=form,
        info=info,
    )
