"""Tokenizers for pre-training: trained on the corpus's training split, or a pre-built one.

``spec`` is ``wordpiece`` (BERT-style: Unicode clean-up, optional lower-casing, split on
whitespace and punctuation, ``##`` continuation pieces) or ``unigram`` (SentencePiece-style:
NFKC, optional lower-casing, ``▁`` marks a word start), both trained with the ``tokenizers``
library on the training sentences only; or a Hub name (``albert-base-v2``,
``bert-base-uncased``) or a local folder saved by ``save_pretrained``.

A trained tokenizer is cached in ``<data_dir>/tokenizers/<corpus>-<spec><vocab>-<key>/``, where
``key`` hashes the training text and every setting, so a changed corpus or setting trains a new
one. The folder is written under a temporary name and renamed into place: concurrent runs (DDP
ranks, a sweep) each may train, one wins, and nobody reads a half-written folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ..base import DatasetMissingError
from .corpus import Corpus

__all__ = ["SPECIAL_TOKENS", "TRAINED", "build_tokenizer", "train_tokenizer", "wrap"]

TRAINED = ("wordpiece", "unigram")
PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
_FORMAT = 1  # bump when the training recipe changes, so old caches are not reused


def train_tokenizer(kind: str, sentences: Iterable[str], *, vocab_size: int, lowercase: bool):
    """A ``tokenizers.Tokenizer`` of ``kind`` trained on ``sentences``; ids 0-4 are
    [PAD] [UNK] [CLS] [SEP] [MASK]."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False
        )
    elif kind == "unigram":
        tokenizer = Tokenizer(models.Unigram())
        steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
        tokenizer.normalizer = normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            unk_token=UNK,
            show_progress=False,
        )
    else:
        raise ValueError(
            f"tokenizer={kind!r} cannot be trained; choose one of {', '.join(TRAINED)}"
        )
    tokenizer.train_from_iterator(sentences, trainer=trainer)
    return tokenizer


def wrap(tokenizer) -> PreTrainedTokenizerFast:
    """A transformers fast tokenizer around a trained ``tokenizers.Tokenizer``; encoding a pair
    gives ``[CLS] A [SEP] B [SEP]`` with token types 0 then 1."""
    from tokenizers import processors

    cls_id, sep_id = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, cls_id), (SEP, sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        unk_token=UNK,
        cls_token=CLS,
        sep_token=SEP,
        mask_token=MASK,
    )


def _settings(kind: str, corpus: Corpus, vocab_size: int, lowercase: bool) -> dict:
    return {
        "kind": kind,
        "vocab_size": vocab_size,
        "lowercase": lowercase,
        "corpus": corpus.name,
        "corpus_train_sha256": corpus.digest("train"),
        "format": _FORMAT,
    }


def _cached_trained(
    kind: str, corpus: Corpus, vocab_size: int, lowercase: bool, data_dir: Path
) -> tuple[PreTrainedTokenizerFast, Path]:
    settings = _settings(kind, corpus, vocab_size, lowercase)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    root = data_dir / "tokenizers"
    folder = root / f"{corpus.name}-{kind}{vocab_size}-{key}"
    if not (folder / "tokenizer.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        trained = wrap(
            train_tokenizer(
                kind, corpus.sentences("train"), vocab_size=vocab_size, lowercase=lowercase
            )
        )
        temporary = root / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        trained.save_pretrained(str(temporary))
        (temporary / "agr_settings.json").write_text(json.dumps(settings, indent=2) + "\n")
        try:
            os.rename(temporary, folder)
        except OSError:  # another process put its (identical) folder there first
            shutil.rmtree(temporary, ignore_errors=True)
            if not (folder / "tokenizer.json").is_file():
                raise
    return PreTrainedTokenizerFast.from_pretrained(str(folder)), folder


def _pretrained(spec: str, data_dir: Path, download: bool) -> PreTrainedTokenizerBase:
    path = Path(spec).expanduser()
    is_path = path.exists() or spec.startswith(("/", "./", "../", "~"))
    cache = data_dir / "huggingface"
    try:
        if is_path:
            return AutoTokenizer.from_pretrained(str(path))
        return AutoTokenizer.from_pretrained(
            spec, cache_dir=str(cache), local_files_only=not download
        )
    except (OSError, ValueError) as error:
        where = f"the folder {path}" if is_path else f"the Hugging Face cache {cache}"
        how = (
            "Save one there with `tokenizer.save_pretrained(...)`"
            if is_path
            else f"Run with `dataset.download=true` on a machine with network access, or run "
            f"`huggingface-cli download {spec} --cache-dir {cache}` there and copy {cache} here"
        )
        raise DatasetMissingError(
            f"Tokenizer {spec!r} could not be loaded from {where}: {type(error).__name__}: "
            f"{error}. {how}; or use `dataset.tokenizer=wordpiece` (or `unigram`) to train one "
            f"on the corpus offline."
        ) from error


def build_tokenizer(
    spec: str,
    corpus: Corpus,
    *,
    vocab_size: int,
    lowercase: bool,
    data_dir: str | Path,
    download: bool = False,
) -> tuple[PreTrainedTokenizerBase, str]:
    """(fast tokenizer, one-line description) for ``spec``; see the module docstring."""
    root = Path(data_dir).expanduser().resolve()
    if spec in TRAINED:
        tokenizer, folder = _cached_trained(spec, corpus, int(vocab_size), bool(lowercase), root)
        description = (
            f"{spec} (vocab {len(tokenizer)}, lowercase={bool(lowercase)}) trained on "
            f"{corpus.name} train, cached in {folder}"
        )
    else:
        tokenizer = _pretrained(spec, root, download)
        description = f"{spec} (vocab {len(tokenizer)}, pre-built)"
    missing = [
        name
        for name in ("cls_token", "sep_token", "pad_token", "mask_token")
        if getattr(tokenizer, name) is None
    ]
    if missing or not tokenizer.is_fast:
        problem = f"has no {', '.join(missing)}" if missing else "is not a fast tokenizer"
        raise ValueError(
            f"tokenizer {spec!r} {problem}; pre-training needs a fast tokenizer with [CLS], "
            f"[SEP], padding and [MASK] tokens"
        )
    return tokenizer, description
