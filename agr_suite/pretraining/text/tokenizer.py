"""Tokenizers for pre-training: a WordPiece vocabulary learned on the corpus's training split,
or a pre-built one.

``spec`` is ``wordpiece`` (BERT-style: Unicode clean-up, optional lower-casing with accent
stripping, split on whitespace and punctuation, ``##`` continuation pieces), learned here on the
training sentences only; or a Hub name (``albert-base-v2``, ``bert-base-uncased``) or a local
folder saved by ``save_pretrained``.

Learning is deterministic: the same sentences and settings give the same vocabulary in the same
id order in any process on any machine. (The ``tokenizers`` library's trainers are not: its
WordPieceTrainer breaks ties between equally frequent pairs in hash-map order, so two runs on the
same text give different vocabularies, and its UnigramTrainer gives different scores and ids
from run to run; so ``unigram`` is refused, see :data:`REFUSED`.) :func:`learn_wordpiece` is a
BPE-style learner, as the library's WordPieceTrainer is:

1. every sentence is normalised (``BertNormalizer``) and pre-tokenised (``BertPreTokenizer``)
   with the ``tokenizers`` components the finished tokenizer uses, and the words are counted;
   words over :data:`MAX_WORD_CHARS` characters are left out (WordPiece encodes them as [UNK]);
2. the vocabulary starts as [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0-4), every character that
   occurs (code-point order), then ``##c`` for every character ``c`` that occurs inside a word
   (code-point order); each word starts as its characters, the first plain, the others ``##c``;
3. repeatedly, the adjacent pair of pieces with the highest count (summed over word
   frequencies) is merged in every word, left to right, and the merged piece (``a`` + ``##b``
   -> ``ab``, ``##a`` + ``##b`` -> ``##ab``) is appended to the vocabulary unless already there;
   ties go to the pair that comes first in (left piece, right piece) order, strings compared by
   code point;
4. until the vocabulary holds ``vocab_size`` entries or every word is a single piece (the
   corpus's maximum). The characters are always kept, even past ``vocab_size``.

Encoding is the ``tokenizers`` WordPiece model (greedy longest match first), deterministic given
the vocabulary.

A learned tokenizer is cached in ``<data_dir>/tokenizers/<corpus>-<spec><vocab>-<key>/``, where
``key`` hashes the training text and every setting, so a changed corpus or setting learns a new
one. The folder is written under a temporary name and renamed into place: concurrent runs (DDP
ranks, a sweep) each may learn, one wins (all learn the same vocabulary), and nobody reads a
half-written folder. :func:`tokenizer_sha256` identifies any fast tokenizer by its full
serialised form (the text of its ``tokenizer.json``), for the run's info.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from agr_suite.core.errors import DatasetMissingError
from agr_suite.pretraining.text.corpus import Corpus

__all__ = [
    "REFUSED",
    "SPECIAL_TOKENS",
    "TRAINED",
    "build_tokenizer",
    "check_spec",
    "count_words",
    "learn_wordpiece",
    "tokenizer_sha256",
    "train_tokenizer",
    "wrap",
]

TRAINED = ("wordpiece",)
REFUSED = {
    "unigram": (
        "tokenizer=unigram is refused: the tokenizers library's UnigramTrainer is not "
        "deterministic (trained twice on the same text it gives different piece scores and "
        "ids), so runs would not repeat. Use dataset.tokenizer=wordpiece (learned "
        "deterministically on the corpus), or a pre-built SentencePiece tokenizer such as "
        "dataset.tokenizer=albert-base-v2 (a Hub name or a local folder)."
    ),
}
PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
PREFIX = "##"
MAX_WORD_CHARS = 100  # the WordPiece model's max_input_chars_per_word
_FORMAT = 2  # bump when the training recipe changes, so old caches are not reused
# 1: the tokenizers library's trainers (not deterministic); 2: learn_wordpiece


def check_spec(spec: str) -> None:
    """ValueError for a refused tokenizer spec (before any work starts)."""
    if spec in REFUSED:
        raise ValueError(REFUSED[spec])


def _components(lowercase: bool):
    from tokenizers import normalizers, pre_tokenizers

    return normalizers.BertNormalizer(lowercase=lowercase), pre_tokenizers.BertPreTokenizer()


def count_words(sentences: Iterable[str], *, lowercase: bool) -> Counter[str]:
    """How often each word occurs after BERT normalisation and pre-tokenisation."""
    normalizer, pre_tokenizer = _components(lowercase)
    counts: Counter[str] = Counter()
    for sentence in sentences:
        words = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(sentence))
        counts.update(word for word, _ in words)
    return counts


def learn_wordpiece(
    word_counts: Mapping[str, int],
    vocab_size: int,
    special_tokens: Iterable[str] = SPECIAL_TOKENS,
) -> list[str]:
    """The vocabulary (tokens in id order) that steps 2-4 of the module docstring learn from
    ``word_counts`` (word -> count; words of zero count or over :data:`MAX_WORD_CHARS`
    characters are ignored). Depends only on its arguments, never on dict or set order."""
    words = sorted(
        (word, int(n))
        for word, n in word_counts.items()
        if word and n > 0 and len(word) <= MAX_WORD_CHARS
    )
    vocab: list[str] = list(dict.fromkeys(special_tokens))
    vocab += sorted({c for word, _ in words for c in word} - set(vocab))
    vocab += sorted({PREFIX + c for word, _ in words for c in word[1:]} - set(vocab))
    index = {token: i for i, token in enumerate(vocab)}
    pieces = [[index[w[0]]] + [index[PREFIX + c] for c in w[1:]] for w, _ in words]
    freqs = [n for _, n in words]

    counts: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], set[int]] = {}
    for w, seq in enumerate(pieces):
        for pair in zip(seq, seq[1:]):
            counts[pair] = counts.get(pair, 0) + freqs[w]
            where.setdefault(pair, set()).add(w)
    # Max-heap by count, then (left, right) strings ascending. Entries go stale when a count
    # changes; every change pushes a fresh entry, and a popped entry is used only if its count
    # is still the pair's current one.
    heap = [(-n, vocab[a], vocab[b], a, b) for (a, b), n in counts.items()]
    heapq.heapify(heap)
    skip = len(PREFIX)
    while len(vocab) < vocab_size and heap:
        negative, _, _, a, b = heapq.heappop(heap)
        if counts.get((a, b)) != -negative:
            continue
        merged = vocab[a] + vocab[b][skip:]  # b is never word-initial: it starts with ##
        new = index.get(merged)
        if new is None:
            new = index[merged] = len(vocab)
            vocab.append(merged)
        changed: set[tuple[int, int]] = set()
        for w in where.pop((a, b)):
            seq = pieces[w]
            out: list[int] = []
            i, last = 0, len(seq) - 1
            while i <= last:
                if i < last and seq[i] == a and seq[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            if len(out) == len(seq):  # a stale entry of `where`: the pair left this word
                continue
            n = freqs[w]
            for pair in zip(seq, seq[1:]):
                counts[pair] -= n
                changed.add(pair)
            for pair in zip(out, out[1:]):
                counts[pair] = counts.get(pair, 0) + n
                where.setdefault(pair, set()).add(w)
                changed.add(pair)
            pieces[w] = out
        for pair in changed:
            n = counts[pair]
            if n > 0:
                heapq.heappush(heap, (-n, vocab[pair[0]], vocab[pair[1]], *pair))
            else:
                del counts[pair]
    return vocab


def train_tokenizer(kind: str, sentences: Iterable[str], *, vocab_size: int, lowercase: bool):
    """A ``tokenizers.Tokenizer`` of ``kind`` learned on ``sentences`` (see the module
    docstring); ids 0-4 are [PAD] [UNK] [CLS] [SEP] [MASK]."""
    from tokenizers import Tokenizer, decoders, models

    check_spec(kind)
    if kind != "wordpiece":
        raise ValueError(
            f"tokenizer={kind!r} cannot be trained; choose one of {', '.join(TRAINED)}"
        )
    vocab = learn_wordpiece(count_words(sentences, lowercase=lowercase), vocab_size)
    tokenizer = Tokenizer(
        models.WordPiece(
            vocab={token: i for i, token in enumerate(vocab)},
            unk_token=UNK,
            continuing_subword_prefix=PREFIX,
            max_input_chars_per_word=MAX_WORD_CHARS,
        )
    )
    tokenizer.normalizer, tokenizer.pre_tokenizer = _components(lowercase)
    tokenizer.decoder = decoders.WordPiece(prefix=PREFIX)
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))  # already ids 0-4: matched whole
    return tokenizer


def tokenizer_sha256(tokenizer: PreTrainedTokenizerBase) -> str:
    """SHA-256 of a fast tokenizer's serialised form (vocabulary, normaliser, pre-tokeniser,
    post-processor...): for a learned one, that of its cached ``tokenizer.json``."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str(pretty=True).encode()).hexdigest()


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
            f"{error}. {how}; or use `dataset.tokenizer=wordpiece` to learn one on the corpus "
            f"offline."
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
    check_spec(spec)
    root = Path(data_dir).expanduser().resolve()
    if spec in TRAINED:
        tokenizer, folder = _cached_trained(spec, corpus, int(vocab_size), bool(lowercase), root)
        description = (
            f"{spec} (vocab {len(tokenizer)}, lowercase={bool(lowercase)}) learned on "
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
