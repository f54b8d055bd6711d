"""The learned WordPiece tokenizer is the same in any process
(agr_suite.pretraining.text.tokenizer), and a pre-training run records what its numbers
depend on (tokenizer and corpus digests).

Expectations come from hand computation (the merge order of a tiny corpus), an independent
slow re-implementation of the documented rule (recount every pair before every merge), and
properties any WordPiece vocabulary must have; never from the learner's own output alone."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import text_fixtures

from agr_suite.pretraining.config import TextDatasetConfig
from agr_suite.pretraining.text import build_pretraining_data
from agr_suite.pretraining.text.corpus import Corpus, pydoc_corpus
from agr_suite.pretraining.text.tokenizer import (
    MAX_WORD_CHARS,
    SPECIAL_TOKENS,
    build_tokenizer,
    count_words,
    learn_wordpiece,
)

ROOT = Path(__file__).resolve().parents[2]
TEXT = 'The "with" statement: Naïve code, e.g. lambda-expressions [MASK] x**2 != 3.5e-7!'
SPECIALS = list(SPECIAL_TOKENS)

# One fresh interpreter: learn the pydoc vocabulary at the pydoc config's size in an empty data
# folder, print the vocabulary in id order, the ids of TEXT, and both digests.
_CHILD = """
import hashlib, json, sys
from pathlib import Path
from agr_suite.pretraining.text.corpus import pydoc_corpus
from agr_suite.pretraining.text.tokenizer import build_tokenizer, tokenizer_sha256
tokenizer, _ = build_tokenizer(
    "wordpiece", pydoc_corpus(), vocab_size=5000, lowercase=True, data_dir=sys.argv[1]
)
(folder,) = (Path(sys.argv[1]) / "tokenizers").iterdir()
vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
print(json.dumps({
    "vocab": [token for token, _ in vocab],
    "ids": [i for _, i in vocab],
    "text": tokenizer(sys.argv[2])["input_ids"],
    "sha256": tokenizer_sha256(tokenizer),
    "file_sha256": hashlib.sha256((folder / "tokenizer.json").read_bytes()).hexdigest(),
}))
"""


def _reference(word_counts: dict[str, int], vocab_size: int) -> list[str]:
    """Independent reference for the documented rule: recount every adjacent pair over every
    word before each merge (slow, obviously right), merge left to right."""
    words = {w: [w[0]] + ["##" + c for c in w[1:]] for w in word_counts}
    vocab = SPECIALS + sorted({c for w in words for c in w})
    vocab += sorted({"##" + c for w in words for c in w[1:]})
    while len(vocab) < vocab_size:
        pairs = Counter()
        for w, seq in words.items():
            for pair in zip(seq, seq[1:]):
                pairs[pair] += word_counts[w]
        if not pairs:
            break
        a, b = min(pairs, key=lambda p: (-pairs[p], p[0], p[1]))
        merged = a + b[2:]
        if merged not in vocab:
            vocab.append(merged)
        for w, seq in words.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == (a, b):
                    out.append(merged)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            words[w] = out
    return vocab


def _corpus(sentences: list[str]) -> Corpus:
    return Corpus(name="hand", splits={"train": [sentences]}, source="test")


# --------------------------------------------------------------------------- the learner


def test_merge_order_of_a_hand_made_corpus():
    counts = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}
    # Pair counts: (##u,##g) 10+5+5=20, (p,##u) 17, (##u,##n) 16, (h,##u) 15, (##g,##s) 5,
    # (b,##u) 4. Merge ##ug (20); then (##u,##n) 16 > (h,##ug) 15 > (p,##u) 12: ##un, hug;
    # then (p,##un) 12: pun; then a tie at 5 between (hug,##s) and (p,##ug), "hug" < "p":
    # hugs, then pug; then (b,##un) 4: bun. Every word is then one piece: the maximum.
    start = SPECIALS + ["b", "g", "h", "n", "p", "s", "u", "##g", "##n", "##s", "##u"]
    merges = ["##ug", "##un", "hug", "pun", "hugs", "pug", "bun"]
    assert learn_wordpiece(counts, 10_000) == start + merges
    assert learn_wordpiece(counts, len(start) + 3) == start + merges[:3]
    # Fewer entries asked for than the specials and characters: the characters are kept.
    assert learn_wordpiece(counts, 3) == start


def test_ties_follow_the_documented_order():
    counts = {"ab": 1, "ac": 2, "ba": 2, "aba": 1, "cba": 1}
    # Pair counts: (a,##b) 1+1, (a,##c) 2, (b,##a) 2, (##b,##a) 1+1, (c,##b) 1. A four-way tie
    # at 2, ordered by the left piece ("#" sorts before letters), then by the right piece:
    # ##ba first; then aba = a ##ba and cba = c ##ba, leaving (a,##b) 1 (in "ab"). Next ac, ba;
    # then three pairs of count 1: (a,##b) < (a,##ba) < (c,##ba): ab, aba, cba.
    start = SPECIALS + ["a", "b", "c", "##a", "##b", "##c"]
    merges = ["##ba", "ac", "ba", "ab", "aba", "cba"]
    assert learn_wordpiece(counts, 10_000) == start + merges


@pytest.mark.slow  # make test-slow; kept out of make test's time budget
def test_learner_matches_the_slow_reference_on_real_text():
    corpus = pydoc_corpus()
    counts = count_words(list(corpus.sentences("train"))[:300], lowercase=True)
    assert len(counts) > 300
    full = _reference(counts, 10**9)  # to the corpus maximum; a smaller size stops earlier
    assert learn_wordpiece(counts, 10**9) == full
    for size in (150, 400, len(full) - 1):
        assert learn_wordpiece(counts, size) == full[:size]


def test_learner_ignores_input_order_and_drops_words_too_long_to_encode():
    counts = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}
    backwards = dict(reversed(list(counts.items())))
    assert learn_wordpiece(backwards, 30) == learn_wordpiece(counts, 30)
    too_long = {**counts, "q" * (MAX_WORD_CHARS + 1): 100}
    assert learn_wordpiece(too_long, 100) == learn_wordpiece(counts, 100)


# --------------------------------------------------------------------------- the tokenizer


def test_every_training_word_encodes_to_its_own_characters(tmp_path):
    corpus = pydoc_corpus()
    counts = count_words(corpus.sentences("train"), lowercase=True)
    tokenizer, _ = build_tokenizer(
        "wordpiece", corpus, vocab_size=1500, lowercase=True, data_dir=tmp_path
    )
    assert len(tokenizer) == 1500  # this size is reached
    assert tokenizer.convert_ids_to_tokens(list(range(5))) == SPECIALS
    vocab = tokenizer.get_vocab()
    assert sorted(vocab.values()) == list(range(len(vocab)))  # dense ids, no duplicate tokens
    backend = tokenizer.backend_tokenizer
    for word in counts:
        pieces = backend.model.tokenize(word)
        assert "".join(p.value.removeprefix("##") for p in pieces) == word
        assert all(p.value.startswith("##") == (i > 0) for i, p in enumerate(pieces))


def test_at_the_corpus_maximum_every_word_is_one_piece(tmp_path):
    corpus = pydoc_corpus()
    counts = count_words(corpus.sentences("train"), lowercase=True)
    tokenizer, _ = build_tokenizer(
        "wordpiece", corpus, vocab_size=5000, lowercase=True, data_dir=tmp_path
    )
    # The pydoc config's vocab_size is beyond what this corpus can fill: the learner stops when
    # every word is one piece (4,953 entries on Python 3.11's pydoc text).
    assert len(tokenizer) < 5000
    vocab = tokenizer.get_vocab()
    assert all(word in vocab for word in counts if len(word) <= MAX_WORD_CHARS)


@pytest.mark.slow
def test_two_fresh_processes_learn_the_same_tokenizer(tmp_path):
    children = []
    for hash_seed in ("1", "271828"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
        folder = tmp_path / f"data{hash_seed}"
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(folder), TEXT],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    first, second = outputs
    assert first["vocab"] == second["vocab"]
    assert first["ids"] == list(range(len(first["vocab"])))
    assert first["text"] == second["text"]
    assert first["sha256"] == second["sha256"] == first["file_sha256"] == second["file_sha256"]
    assert first["vocab"][:5] == SPECIALS and first["text"][0] == 2 and first["text"][-1] == 3
    assert 4 in first["text"] and 1 not in first["text"]  # [MASK] kept whole; no [UNK]


# --------------------------------------------------------------------------- run info


def test_run_info_names_the_tokenizer_and_corpus_and_follows_the_data(tmp_path):
    settings = TextDatasetConfig(
        name="wikitext2", download=False, vocab_size=300, max_length=64, max_predictions=10
    )
    folder = text_fixtures.write_classic(tmp_path, "raw")
    info = build_pretraining_data(settings, data_dir=tmp_path, seed=0).info
    (cached,) = (tmp_path / "tokenizers").iterdir()
    file_digest = hashlib.sha256((cached / "tokenizer.json").read_bytes()).hexdigest()
    assert info["tokenizer_sha256"] == file_digest
    assert len(info["corpus_sha256"]) == 64

    test_file = folder / "wiki.test.raw"
    test_file.write_text(test_file.read_text() + " A new closing sentence here . \n \n")
    changed_eval = build_pretraining_data(settings, data_dir=tmp_path, seed=0).info
    assert changed_eval["corpus_sha256"] != info["corpus_sha256"]
    assert changed_eval["tokenizer_sha256"] == info["tokenizer_sha256"]  # learned on train only

    train_file = folder / "wiki.train.raw"
    train_file.write_text(train_file.read_text() + " Zebras quietly graze at dawn . \n \n")
    changed_train = build_pretraining_data(settings, data_dir=tmp_path, seed=0).info
    assert changed_train["corpus_sha256"] not in (
        info["corpus_sha256"],
        changed_eval["corpus_sha256"],
    )
    assert changed_train["tokenizer_sha256"] != info["tokenizer_sha256"]
