"""ALBERT pre-training examples: sentence-order pairs with n-gram masked tokens.

From each document, consecutive sentences are gathered into chunks of about ``max_length - 3``
tokens (a random shorter target with probability ``short_seq_prob``, as in ALBERT, so the model
also sees short inputs); a chunk is cut at a random sentence boundary into segments A and B (a
single-sentence chunk is cut inside the sentence). A sentence longer than half the token budget
is first cut into pieces, so a chunk always fits and nothing is truncated. The pairs are laid
out once per data set, from a numpy generator with a given seed.

An example is ``[CLS] A [SEP] B [SEP]`` (label 0, original order) or, with probability 0.5,
``[CLS] B [SEP] A [SEP]`` (label 1, swapped), padded to ``max_length``, then masked (see
:mod:`.masking`). :class:`PretrainingExamples` draws the swap and the masks afresh at every
access from torch's RNG (training); :class:`FixedExamples` draws them once, from its own seed,
and keeps the tensors (evaluation: the same examples every epoch and every run), and
:meth:`FixedExamples.concatenate` joins several such draws of one split.

Every item is a dict of tensors with fixed shapes, so PyTorch's default collate batches them:
``input_ids``, ``token_type_ids``, ``attention_mask``, ``labels`` ([max_length]; -100 where
nothing is predicted), ``mlm_positions`` ([max_predictions]; see
:func:`~.masking.mask_sequence`) and ``sentence_order_label`` (a scalar).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from agr_suite.pretraining.text.masking import MaskingRule, mask_sequence

__all__ = [
    "FixedExamples",
    "PretrainingExamples",
    "SegmentPair",
    "Sentence",
    "SequenceFormat",
    "make_example",
    "segment_pairs",
    "tokenize_documents",
]


@dataclass(frozen=True)
class Sentence:
    ids: np.ndarray
    """int32 token ids."""
    word_starts: np.ndarray
    """bool: the token starts a word (the rest are continuation pieces)."""

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, part: slice) -> Sentence:
        return Sentence(self.ids[part], self.word_starts[part])

    @staticmethod
    def join(sentences: Sequence[Sentence]) -> Sentence:
        return Sentence(
            np.concatenate([s.ids for s in sentences]),
            np.concatenate([s.word_starts for s in sentences]),
        )


@dataclass(frozen=True)
class SegmentPair:
    """Two consecutive segments of one document, ``first`` before ``second``."""

    first: Sentence
    second: Sentence


@dataclass(frozen=True)
class SequenceFormat:
    """How a pair becomes model input: the special ids, the padded length, the masking."""

    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int
    special_ids: frozenset[int]
    vocab_size: int
    max_length: int
    masking: MaskingRule

    @property
    def max_tokens(self) -> int:
        """Tokens of A and B together: the length less [CLS] and two [SEP]."""
        return self.max_length - 3

    def replacement_ids(self) -> Tensor:
        """The ids a randomly replaced token may take: every non-special id."""
        return torch.tensor(
            [i for i in range(self.vocab_size) if i not in self.special_ids], dtype=torch.long
        )

    @classmethod
    def of(cls, tokenizer, max_length: int, masking: MaskingRule) -> SequenceFormat:
        return cls(
            cls_id=tokenizer.cls_token_id,
            sep_id=tokenizer.sep_token_id,
            pad_id=tokenizer.pad_token_id,
            mask_id=tokenizer.mask_token_id,
            special_ids=frozenset(tokenizer.all_special_ids),
            vocab_size=len(tokenizer),
            max_length=max_length,
            masking=masking,
        )


def tokenize_documents(
    tokenizer, documents: list[list[str]], batch_size: int = 4096
) -> list[list[Sentence]]:
    """Each document's sentences as token ids with word starts (empty sentences dropped)."""
    backend = tokenizer.backend_tokenizer
    flat = [sentence for document in documents for sentence in document]
    encoded: list[Sentence] = []
    for start in range(0, len(flat), batch_size):
        for encoding in backend.encode_batch(
            flat[start : start + batch_size], add_special_tokens=False
        ):
            words = encoding.word_ids
            starts = [
                i == 0 or words[i] is None or words[i] != words[i - 1] for i in range(len(words))
            ]
            encoded.append(
                Sentence(np.asarray(encoding.ids, dtype=np.int32), np.asarray(starts, dtype=bool))
            )
    result, index = [], 0
    for document in documents:
        sentences = [s for s in encoded[index : index + len(document)] if len(s)]
        index += len(document)
        result.append(sentences)
    return result


def _pieces(sentence: Sentence, longest: int) -> list[Sentence]:
    return [sentence[i : i + longest] for i in range(0, len(sentence), longest)]


def _split_chunk(chunk: list[Sentence], rng: np.random.Generator) -> SegmentPair | None:
    if len(chunk) >= 2:
        cut = int(rng.integers(1, len(chunk)))  # 1 .. len-1 sentences in A
        return SegmentPair(Sentence.join(chunk[:cut]), Sentence.join(chunk[cut:]))
    (sentence,) = chunk
    if len(sentence) < 2:
        return None
    cut = int(rng.integers(1, len(sentence)))
    return SegmentPair(sentence[:cut], sentence[cut:])


def segment_pairs(
    documents: list[list[Sentence]],
    *,
    max_tokens: int,
    short_seq_prob: float,
    rng: np.random.Generator,
) -> list[SegmentPair]:
    """Sentence-order pairs of every document (see the module docstring); each pair has at most
    ``max_tokens`` tokens and A, B are consecutive, non-empty and from one document."""
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be >= 2, got {max_tokens}")

    def target() -> int:
        if rng.random() < short_seq_prob:
            return int(rng.integers(2, max_tokens + 1))
        return max_tokens

    pairs: list[SegmentPair] = []
    for document in documents:
        sentences = [p for s in document for p in _pieces(s, max(1, max_tokens // 2))]
        chunk: list[Sentence] = []
        length, goal = 0, target()
        for sentence in sentences:
            if chunk and length + len(sentence) > max_tokens:
                pair = _split_chunk(chunk, rng)
                pairs.extend([pair] if pair else [])
                chunk, length, goal = [], 0, target()
            chunk.append(sentence)
            length += len(sentence)
            if length >= goal:
                pair = _split_chunk(chunk, rng)
                pairs.extend([pair] if pair else [])
                chunk, length, goal = [], 0, target()
        if chunk:
            pair = _split_chunk(chunk, rng)
            pairs.extend([pair] if pair else [])
    return pairs


def make_example(
    pair: SegmentPair,
    form: SequenceFormat,
    replacement_ids: Tensor,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """One padded, masked example; the swap (label 1) is drawn with probability 0.5."""
    swapped = bool(torch.rand((), generator=generator) < 0.5)
    a, b = (pair.second, pair.first) if swapped else (pair.first, pair.second)
    n_a, n_b = len(a), len(b)
    used = n_a + n_b + 3
    if used > form.max_length:
        raise ValueError(f"a pair of {n_a + n_b} tokens does not fit max_length={form.max_length}")
    ids = torch.full((form.max_length,), form.pad_id, dtype=torch.long)
    ids[0], ids[n_a + 1], ids[used - 1] = form.cls_id, form.sep_id, form.sep_id
    ids[1 : n_a + 1] = torch.from_numpy(a.ids.astype(np.int64))
    ids[n_a + 2 : used - 1] = torch.from_numpy(b.ids.astype(np.int64))
    special = torch.ones(form.max_length, dtype=torch.bool)
    special[1 : n_a + 1] = False
    special[n_a + 2 : used - 1] = False
    starts = torch.zeros(form.max_length, dtype=torch.bool)
    starts[1 : n_a + 1] = torch.from_numpy(a.word_starts)
    starts[n_a + 2 : used - 1] = torch.from_numpy(b.word_starts)
    token_types = torch.zeros(form.max_length, dtype=torch.long)
    token_types[n_a + 2 : used] = 1
    attention = torch.zeros(form.max_length, dtype=torch.long)
    attention[:used] = 1
    masked, labels, positions = mask_sequence(
        ids,
        special,
        starts,
        rule=form.masking,
        mask_id=form.mask_id,
        replacement_ids=replacement_ids,
        generator=generator,
    )
    return {
        "input_ids": masked,
        "token_type_ids": token_types,
        "attention_mask": attention,
        "labels": labels,
        "mlm_positions": positions,
        "sentence_order_label": torch.tensor(int(swapped), dtype=torch.long),
    }


class PretrainingExamples(Dataset):
    """Training examples: a fresh swap and fresh masks at every access (torch's global RNG)."""

    def __init__(self, pairs: list[SegmentPair], form: SequenceFormat) -> None:
        self.pairs, self.form = pairs, form
        self.replacement_ids = form.replacement_ids()

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return make_example(self.pairs[index], self.form, self.replacement_ids)


class FixedExamples(Dataset):
    """Evaluation examples, drawn once from ``seed`` (independent of the run's RNG)."""

    def __init__(self, pairs: list[SegmentPair], form: SequenceFormat, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        replacement_ids = form.replacement_ids()
        examples = [make_example(p, form, replacement_ids, generator) for p in pairs]
        keys = examples[0].keys() if examples else ()
        self.tensors = {key: torch.stack([e[key] for e in examples]) for key in keys}

    @classmethod
    def concatenate(cls, parts: Sequence[FixedExamples]) -> FixedExamples:
        """The examples of ``parts``, in order (e.g. several draws of one split)."""
        parts = [part for part in parts if len(part)]
        joined = cls.__new__(cls)
        keys = parts[0].tensors.keys() if parts else ()
        joined.tensors = {key: torch.cat([part.tensors[key] for part in parts]) for key in keys}
        return joined

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values()))) if self.tensors else 0

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: value[index] for key, value in self.tensors.items()}
