"""Text data for ALBERT pre-training (agr_suite.pretraining.text): corpora, WikiText readers on
fixture files in the real formats, tokenizers, sentence-order pairs and n-gram masking.

Expectations come from the fixtures' construction, hand computation and the rules' own
probabilities (binomial bounds), never from the code under test."""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import pytest
import text_fixtures
import torch

from agr_suite.core.errors import DatasetMissingError
from agr_suite.pretraining.config import TextDatasetConfig
from agr_suite.pretraining.text import build_pretraining_data
from agr_suite.pretraining.text.corpus import (
    PYDOC_TEST_EVERY,
    Corpus,
    pydoc_corpus,
    split_sentences,
)
from agr_suite.pretraining.text.docstrings import (
    DOCSTRINGS_TEST_EVERY,
    docstrings_corpus,
    module_docstrings,
)
from agr_suite.pretraining.text.masking import (
    IGNORE_INDEX,
    MaskingRule,
    choose_masked_positions,
    mask_sequence,
    word_spans,
)
from agr_suite.pretraining.text.pretraining import (
    FixedExamples,
    Sentence,
    SequenceFormat,
    make_example,
    segment_pairs,
    tokenize_documents,
)
from agr_suite.pretraining.text.tokenizer import SPECIAL_TOKENS, build_tokenizer
from agr_suite.pretraining.text.wikitext import load_wikitext2


def within(count: float, n: int, p: float, sigmas: float = 4.0) -> bool:
    """``count`` successes of ``n`` trials is within ``sigmas`` binomial deviations of n*p."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1e-9


# --------------------------------------------------------------------------- corpora


def test_split_sentences_at_sentence_ends_only():
    paragraph = 'It rose 2.5 m. "Why?" she asked.\nThe end (mostly.) Next one! e.g. this stays'
    assert split_sentences(paragraph) == [
        "It rose 2.5 m.",
        '"Why?" she asked.',
        "The end (mostly.)",
        "Next one! e.g. this stays",  # no capital after the "!": not a sentence end
    ]


def test_pydoc_split_is_fixed_disjoint_and_about_a_tenth():
    torch.manual_seed(123)
    first = pydoc_corpus()
    torch.manual_seed(456)
    np.random.seed(7)  # noqa: NPY002 (the split must not depend on any global RNG)
    second = pydoc_corpus()
    assert first.splits == second.splits
    train, test = first.splits["train"], first.splits["test"]
    total = len(train) + len(test)
    assert len(test) == total // PYDOC_TEST_EVERY
    assert len(train) > 120  # ~170 distinct titled sections of documentation
    # The help topics repeat whole sections; none may be on both sides of the split.
    train_text = {s for d in train for s in d}
    test_sentences = [s for d in test for s in d]
    assert all(not set(d) <= train_text for d in test)
    assert sum(s in train_text for s in test_sentences) < 0.05 * len(test_sentences)
    words = sum(len(s.split()) for s in first.sentences("train"))
    assert 30_000 < words < 80_000


FIXTURE_MODULE = '''"""Module title.

Reads things. Then writes them.

    indented   example
    block
"""


async def fetch():
    """Fetch one."""


class Box:
    """A box.

    >>> Box().open()
    True
    """

    def open(self):
        """Open it! It opens."""

        def inner():
            """Inner help."""

        return True


def bare():
    return 1
'''


def test_module_docstrings_in_source_order_with_code_blocks_whole():
    assert module_docstrings(FIXTURE_MODULE) == [
        "Module title.",
        "Reads things.",
        "Then writes them.",
        "indented example block",
        "Fetch one.",
        "A box.",
        ">>> Box().open() True",
        "Open it!",
        "It opens.",
        "Inner help.",
    ]


def test_docstrings_corpus_leaves_out_tests_and_repeats_and_splits_every_tenth(tmp_path):
    """A hand-made library: 12 distinct documented modules (m00..m11) in path order, plus a
    copy of m03, a one-sentence module, a Python 2 file and modules under test/, tests/,
    idle_test/, site-packages/ and pydoc_data/, which must all be left out."""

    def module(path: str, text: str) -> None:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)

    for i in range(12):
        module(f"m{i:02d}.py", f'"""Module {i} first.\n\nModule {i} second."""\n')
    module("m03_copy.py", '"""Module 3 first.\n\nModule 3 second."""\n')
    module("one.py", '"""Only one sentence."""\n')
    module("py2.py", 'print "Python 2"\n"""Old module. Still old."""\n')
    for folder in ("test", "pkg/tests", "idlelib/idle_test", "site-packages/x", "pydoc_data"):
        module(f"{folder}/t.py", '"""Left out. Left out too."""\n')
    corpus = docstrings_corpus(tmp_path)
    every = DOCSTRINGS_TEST_EVERY
    expected = [[f"Module {i} first.", f"Module {i} second."] for i in range(12)]
    assert corpus.splits["test"] == [d for i, d in enumerate(expected) if i % every == every - 1]
    assert corpus.splits["train"] == [d for i, d in enumerate(expected) if i % every != every - 1]


@pytest.mark.slow  # make test-slow; kept out of make test's time budget
def test_the_librarys_docstrings_corpus_is_large_and_its_split_disjoint():
    corpus = docstrings_corpus()
    train, test = corpus.splits["train"], corpus.splits["test"]
    assert len(test) == (len(train) + len(test)) // DOCSTRINGS_TEST_EVERY
    words = sum(len(s.split()) for s in corpus.sentences("train"))
    assert words > 200_000  # several times pydoc's ~58,000 training words
    train_documents = {tuple(d) for d in train}
    assert not any(tuple(d) in train_documents for d in test)


# --------------------------------------------------------------------------- WikiText


@pytest.mark.parametrize("variant", ["raw", "tokens"])
def test_wikitext_classic_files_give_articles_of_sentences(tmp_path, variant):
    text_fixtures.write_classic(tmp_path, variant)
    corpus = load_wikitext2(tmp_path, variant=variant)
    for split in ("train", "validation", "test"):
        assert corpus.splits[split] == text_fixtures.expected_sentences(split, variant)
    assert corpus.name == f"wikitext2-{variant}"


def test_wikitext_parquet_snapshot_reads_like_the_classic_files(tmp_path):
    text_fixtures.write_parquet(tmp_path, "raw")
    corpus = load_wikitext2(tmp_path, variant="raw")
    for split in ("train", "validation", "test"):
        assert corpus.splits[split] == text_fixtures.expected_sentences(split, "raw")
    assert str(tmp_path / "wikitext" / "wikitext-2-raw-v1") in corpus.source


def test_missing_wikitext_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetMissingError) as caught:
        load_wikitext2(tmp_path, variant="raw", download=False)
    message = str(caught.value)
    assert str(tmp_path) in message
    assert "wiki.{train,valid,test}.raw" in message
    assert "dataset.download=true" in message
    assert "huggingface-cli download Salesforce/wikitext" in message


def test_partial_wikitext_names_what_was_found(tmp_path):
    folder = text_fixtures.write_classic(tmp_path, "raw")
    (folder / "wiki.test.raw").unlink()
    with pytest.raises(DatasetMissingError, match="found only .*wiki.train.raw"):
        load_wikitext2(tmp_path, variant="raw")


def test_download_offline_fails_with_the_download_error(tmp_path):
    assert os.environ.get("HF_DATASETS_OFFLINE") == "1"
    with pytest.raises(DatasetMissingError, match="download attempt ended in"):
        load_wikitext2(tmp_path, variant="raw", download=True)


# --------------------------------------------------------------------------- tokenizers


SAMPLE = [
    "The quick brown fox jumps over the lazy dog.",
    "A river flows through the valley, past the old mill.",
    "Music and art were taught at the village school.",
] * 20


def _corpus(sentences=SAMPLE) -> Corpus:
    return Corpus(name="sample", splits={"train": [list(sentences)]}, source="test")


@pytest.mark.parametrize("kind", ["wordpiece"])
def test_tokenizer_trains_offline_and_round_trips_through_its_cache(tmp_path, kind):
    tokenizer, description = build_tokenizer(
        kind, _corpus(), vocab_size=120, lowercase=True, data_dir=tmp_path
    )
    assert kind in description
    assert tokenizer.convert_ids_to_tokens(list(range(5))) == list(SPECIAL_TOKENS)
    text = "the river flows past the old school."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids  # every character was seen in training
    assert tokenizer.decode(ids).replace(" .", ".") == text
    pair = tokenizer("the dog", "the fox")["input_ids"]
    assert pair[0] == tokenizer.cls_token_id and pair.count(tokenizer.sep_token_id) == 2

    folders = list((tmp_path / "tokenizers").iterdir())
    assert len(folders) == 1 and not folders[0].name.startswith(".")
    stamp = (folders[0] / "tokenizer.json").stat().st_mtime_ns
    again, _ = build_tokenizer(kind, _corpus(), vocab_size=120, lowercase=True, data_dir=tmp_path)
    assert (folders[0] / "tokenizer.json").stat().st_mtime_ns == stamp  # loaded, not retrained
    assert again.get_vocab() == tokenizer.get_vocab()
    assert again(text, add_special_tokens=False)["input_ids"] == ids

    build_tokenizer(kind, _corpus(), vocab_size=100, lowercase=True, data_dir=tmp_path)
    build_tokenizer(kind, _corpus(SAMPLE[:30]), vocab_size=120, lowercase=True, data_dir=tmp_path)
    assert len(list((tmp_path / "tokenizers").iterdir())) == 3  # new settings, new cache entry


def test_unigram_is_refused_before_any_work(tmp_path):
    # The tokenizers library's UnigramTrainer gives different scores and ids run to run.
    with pytest.raises(ValueError, match="unigram is refused.*not deterministic"):
        build_tokenizer("unigram", _corpus(), vocab_size=100, lowercase=True, data_dir=tmp_path)
    # no WikiText staged: refused first
    settings = TextDatasetConfig(name="wikitext2", download=False, tokenizer="unigram")
    with pytest.raises(ValueError, match="unigram is refused"):
        build_pretraining_data(settings, data_dir=tmp_path, seed=0)
    assert not (tmp_path / "tokenizers").exists()


def test_unreachable_hub_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetMissingError, match="albert-base-v2.*dataset.tokenizer=wordpiece"):
        build_tokenizer(
            "albert-base-v2", _corpus(), vocab_size=100, lowercase=True, data_dir=tmp_path
        )


# --------------------------------------------------------------------------- SOP pairs


def _document(first_id: int, lengths: list[int]) -> list[Sentence]:
    """Sentences whose token ids count up from ``first_id``: a token's id is its position in
    the document plus ``first_id``; every token starts a word."""
    sentences, next_id = [], first_id
    for length in lengths:
        ids = np.arange(next_id, next_id + length, dtype=np.int32)
        sentences.append(Sentence(ids, np.ones(length, dtype=bool)))
        next_id += length
    return sentences


def test_pairs_are_consecutive_segments_of_one_document():
    rng = np.random.default_rng(0)
    lengths = [[int(n) for n in rng.integers(1, 30, size=40)] for _ in range(3)]
    documents = [_document(10_000 * (d + 1), lengths[d]) for d in range(3)]
    pairs = segment_pairs(documents, max_tokens=40, short_seq_prob=0.3, rng=rng)
    covered = {d: [] for d in range(3)}
    for pair in pairs:
        a, b = pair.first.ids.tolist(), pair.second.ids.tolist()
        assert a and b and len(a) + len(b) <= 40
        joined = a + b
        assert joined == list(range(joined[0], joined[0] + len(joined)))  # contiguous, A then B
        document = joined[0] // 10_000 - 1
        assert joined[-1] // 10_000 - 1 == document  # never across documents
        covered[document].append((joined[0], joined[-1]))
    for d, spans in covered.items():  # chunks follow each other and cover the document
        starts = [s for s, _ in spans]
        assert starts == sorted(starts) and starts[0] == 10_000 * (d + 1)
        assert spans[-1][1] == 10_000 * (d + 1) + sum(lengths[d]) - 1


def test_chunks_fill_the_token_budget_when_short_sequences_are_off():
    # 50 sentences of 5 tokens, budget 20: twelve 4-sentence chunks and a last one of 2.
    pairs = segment_pairs(
        [_document(0, [5] * 50)], max_tokens=20, short_seq_prob=0.0, rng=np.random.default_rng(1)
    )
    assert [len(p.first) + len(p.second) for p in pairs] == [20] * 12 + [10]
    assert all(len(p.first) % 5 == 0 and len(p.second) % 5 == 0 for p in pairs)  # cut at a boundary


def test_a_long_sentence_is_cut_and_nothing_is_lost():
    pairs = segment_pairs(
        [_document(0, [100, 3])], max_tokens=30, short_seq_prob=0.0, rng=np.random.default_rng(2)
    )
    tokens = [t for p in pairs for t in p.first.ids.tolist() + p.second.ids.tolist()]
    assert tokens == list(range(103))
    assert all(len(p.first) + len(p.second) <= 30 for p in pairs)


def _format(max_length=48, vocab_size=200, **masking) -> SequenceFormat:
    return SequenceFormat(
        cls_id=2,
        sep_id=3,
        pad_id=0,
        mask_id=4,
        special_ids=frozenset(range(5)),
        vocab_size=vocab_size,
        max_length=max_length,
        masking=MaskingRule(**masking),
    )


def _unmasked(example: dict) -> torch.Tensor:
    """The input ids before masking: the labels hold the originals of the changed positions."""
    labels = example["labels"]
    return torch.where(labels == IGNORE_INDEX, example["input_ids"], labels)


def test_sop_label_says_exactly_whether_the_segments_were_swapped():
    pairs = segment_pairs(
        [_document(1000, [4, 6, 3, 7, 5, 2, 8])],
        max_tokens=45,
        short_seq_prob=0.0,
        rng=np.random.default_rng(3),
    )
    form = _format(max_length=48, vocab_size=2000)
    generator = torch.Generator().manual_seed(0)
    labels = []
    for _ in range(200):
        example = make_example(pairs[0], form, form.replacement_ids(), generator)
        ids = _unmasked(example).tolist()
        seps = [i for i, t in enumerate(ids) if t == form.sep_id]
        assert ids[0] == form.cls_id and len(seps) == 2
        shown_first, shown_second = ids[1 : seps[0]], ids[seps[0] + 1 : seps[1]]
        swapped = shown_first[0] > shown_second[0]  # ids grow along the document
        assert example["sentence_order_label"].item() == int(swapped)
        original = (shown_second + shown_first) if swapped else (shown_first + shown_second)
        assert original == list(range(1000, 1000 + len(original)))
        types = example["token_type_ids"].tolist()
        assert types[: seps[0] + 1] == [0] * (seps[0] + 1)
        assert types[seps[0] + 1 : seps[1] + 1] == [1] * (seps[1] - seps[0])
        assert example["attention_mask"].tolist() == [1] * (seps[1] + 1) + [0] * (47 - seps[1])
        assert ids[seps[1] + 1 :] == [form.pad_id] * (47 - seps[1])
        labels.append(int(swapped))
    assert within(sum(labels), len(labels), 0.5)


def test_sop_labels_are_balanced_over_a_corpus_eval_set():
    documents = [_document(1000 * (d + 1), [5, 7, 6, 4, 9, 3]) for d in range(60)]
    pairs = segment_pairs(
        documents, max_tokens=20, short_seq_prob=0.1, rng=np.random.default_rng(4)
    )
    examples = FixedExamples(pairs, _format(max_length=23, vocab_size=70_000), seed=0)
    labels = examples.tensors["sentence_order_label"]
    assert within(int(labels.sum()), len(labels), 0.5)
    again = FixedExamples(pairs, _format(max_length=23, vocab_size=70_000), seed=0)
    assert all(torch.equal(again.tensors[k], v) for k, v in examples.tensors.items())


# --------------------------------------------------------------------------- masking


def test_word_spans_by_hand():
    # positions:     0      1      2      3      4      5      6      7
    special = [True, False, False, False, True, False, False, True]
    starts = [False, True, False, True, False, False, True, False]
    # a word continues until the next word start; a special token ends it (position 5 starts
    # a word although it is a continuation piece, because position 4 is special)
    assert word_spans(special, starts) == [(1, 3), (3, 4), (5, 6), (6, 7)]


def _random_sequence(generator, length=128, vocab=1000, word_start_p=0.7):
    """[CLS] A [SEP] B [SEP] [PAD]...: specials at 0, 60, 120 and 121-127."""
    ids = torch.randint(5, vocab, (length,), generator=generator)
    special = torch.zeros(length, dtype=torch.bool)
    special[[0, 60, 120]] = True
    special[121:] = True
    ids[0], ids[60], ids[120], ids[121:] = 2, 3, 3, 0
    starts = torch.rand(length, generator=generator) < word_start_p
    return ids, special, starts


def test_masking_statistics_follow_the_rule():
    rule = MaskingRule(max_predictions=1000)  # no cap: the 15% budget decides
    generator = torch.Generator().manual_seed(0)
    replacement = torch.arange(5, 1000)
    chosen_total, tokens_total = 0, 0
    as_mask = kept = replaced = 0
    for _ in range(300):
        ids, special, starts = _random_sequence(generator)
        masked, labels, positions = mask_sequence(
            ids,
            special,
            starts,
            rule=rule,
            mask_id=4,
            replacement_ids=replacement,
            generator=generator,
        )
        chosen = labels != IGNORE_INDEX
        n_tokens = int((~special).sum())
        assert n_tokens == 118  # 128 less [CLS], two [SEP] and 7 [PAD]
        budget = 18  # round(0.15 * 118) = round(17.7)
        assert int(chosen.sum()) <= budget
        assert not chosen[special].any()  # specials are never predicted ...
        assert torch.equal(masked[special], ids[special])  # ... nor changed
        assert torch.equal(labels[chosen], ids[chosen])
        assert torch.equal(masked[~chosen], ids[~chosen])  # nothing else changes
        assert sorted(positions[: int(chosen.sum())].tolist()) == chosen.nonzero().view(-1).tolist()
        # whole words: a chosen token's whole word is chosen
        for start, end in word_spans(special.tolist(), starts.tolist()):
            assert chosen[start:end].all() or not chosen[start:end].any()
        out = masked[chosen]
        as_mask += int((out == 4).sum())
        kept += int((out == ids[chosen]).sum())
        replaced += int(((out != 4) & (out != ids[chosen])).sum())
        assert not torch.isin(out[out != 4], torch.arange(0, 5)).any()  # never a special id
        chosen_total += int(chosen.sum())
        tokens_total += n_tokens
    # about 15% of the non-special tokens: at most the budget, 18/118 = 15.25%, and short of it
    # only when a multi-token word does not fit the last free slots
    assert 0.145 <= chosen_total / tokens_total <= 18 / 118
    n = chosen_total
    p_same = 1 / len(replacement)  # a random replacement may draw the original token
    assert within(as_mask, n, 0.8)
    assert within(kept, n, 0.1 + 0.1 * p_same)
    assert within(replaced, n, 0.1 * (1 - p_same))


def test_masking_caps_predictions_and_pads_positions():
    rule = MaskingRule(max_predictions=5)
    generator = torch.Generator().manual_seed(1)
    ids, special, starts = _random_sequence(generator)
    _, labels, positions = mask_sequence(
        ids,
        special,
        starts,
        rule=rule,
        mask_id=4,
        replacement_ids=torch.arange(5, 1000),
        generator=generator,
    )
    assert positions.shape == (5,)
    chosen = int((labels != IGNORE_INDEX).sum())
    assert 1 <= chosen <= 5
    assert positions[chosen:].tolist() == [0] * (5 - chosen)  # padding points at [CLS]
    assert labels[0] == IGNORE_INDEX


def test_ngram_lengths_follow_one_over_n_and_are_contiguous():
    # 600 one-token words and a budget of 3: the first n-gram takes n ~ p(n) = (1/n)/(11/6),
    # the rest of the budget is filled by n-grams shortened to fit. By hand:
    #   one run of 3       <=> n1 = 3                      p = 2/11
    #   runs of 1, 1, 1     <=> n1 = 1 and n2 = 1           p = (6/11)^2
    #   runs of 2 and 1     otherwise                       p = 1 - 2/11 - 36/121
    # (ignoring the ~1% chance that two n-grams touch or one is cut short at the end).
    rule = MaskingRule(max_predictions=3)
    spans = [(i, i + 1) for i in range(1, 601)]
    generator = torch.Generator().manual_seed(2)
    outcomes = {"3": 0, "1+1+1": 0, "2+1": 0, "other": 0}
    trials = 1500
    for _ in range(trials):
        chosen = choose_masked_positions(spans, 3, rule, generator)
        runs, run = [], 1
        for left, right in zip(chosen, chosen[1:]):
            if right == left + 1:
                run += 1
            else:
                runs.append(run)
                run = 1
        runs.append(run)
        key = "+".join(map(str, sorted(runs, reverse=True)))
        outcomes[key if key in outcomes else "other"] += 1
    assert within(outcomes["3"], trials, 2 / 11)
    assert within(outcomes["1+1+1"], trials, 36 / 121)
    assert within(outcomes["2+1"], trials, 1 - 2 / 11 - 36 / 121, sigmas=5)
    assert outcomes["other"] == 0


def test_rule_rejects_impossible_fractions():
    with pytest.raises(ValueError, match="sum <= 1"):
        MaskingRule(mask_token_fraction=0.9, random_token_fraction=0.2)


# --------------------------------------------------------------------------- data sets


def test_eval_set_is_fixed_across_run_seeds_and_training_draws_follow_torch_seed(tmp_path):
    text_fixtures.write_classic(tmp_path, "raw")
    settings = TextDatasetConfig(
        name="wikitext2", download=False, vocab_size=300, max_length=64, max_predictions=10
    )
    a = build_pretraining_data(settings, data_dir=tmp_path, seed=0)
    b = build_pretraining_data(settings, data_dir=tmp_path, seed=1)
    assert all(torch.equal(a.eval_set.tensors[k], v) for k, v in b.eval_set.tensors.items())
    assert a.info["eval_size"] == len(a.eval_set) > 0
    assert a.info["train_size"] == len(a.train_set) > 0
    torch.manual_seed(5)
    first = [a.train_set[i] for i in range(4)]
    torch.manual_seed(5)
    second = [a.train_set[i] for i in range(4)]
    for x, y in zip(first, second):
        assert all(torch.equal(x[k], y[k]) for k in x)
    item = a.train_set[0]
    assert item["input_ids"].shape == (64,) and item["mlm_positions"].shape == (10,)


def _document_order_pairs(tensors: dict, rows: range, form) -> list[tuple]:
    """Each example's two segments (unmasked token ids), A before B as in the document."""
    pairs = []
    for row in rows:
        ids = _unmasked({k: v[row] for k, v in tensors.items()}).tolist()
        seps = [i for i, t in enumerate(ids) if t == form.sep_id]
        shown = (tuple(ids[1 : seps[0]]), tuple(ids[seps[0] + 1 : seps[1]]))
        swapped = bool(tensors["sentence_order_label"][row])
        pairs.append(shown[::-1] if swapped else shown)
    return pairs


def test_eval_draws_lay_the_eval_split_out_again_and_draw_0_is_the_single_draw_set(tmp_path):
    text_fixtures.write_classic(tmp_path, "raw")
    settings = TextDatasetConfig(
        name="wikitext2", download=False, vocab_size=300, max_length=64, max_predictions=10
    )
    single = build_pretraining_data(settings, data_dir=tmp_path, seed=0)
    draws = build_pretraining_data(
        dataclasses.replace(settings, eval_draws=3), data_dir=tmp_path, seed=1
    )
    # Today's construction, written out: the test split laid out and drawn from eval_seed
    form = single.form
    documents = tokenize_documents(single.tokenizer, load_wikitext2(tmp_path).splits["test"])

    def layout(pair_seed: int):
        rng = np.random.default_rng(pair_seed)
        return segment_pairs(
            documents, max_tokens=form.max_tokens, short_seq_prob=settings.short_seq_prob, rng=rng
        )

    today = FixedExamples(layout(0), form, seed=0).tensors
    assert all(torch.equal(single.eval_set.tensors[k], v) for k, v in today.items())
    sizes = [len(layout(k)) for k in range(3)]  # draw k: its pairs laid out from seed 0 + k
    assert len(draws.eval_set) == sum(sizes) == draws.info["eval_size"]
    assert draws.info["eval_draws"] == 3 and single.info["eval_draws"] == 1
    assert single.info["eval_size"] == sizes[0]
    assert all(torch.equal(draws.eval_set.tensors[k][: sizes[0]], v) for k, v in today.items())
    # The draws cut the same text at other points
    starts = np.cumsum([0, *sizes])
    segments = [
        _document_order_pairs(draws.eval_set.tensors, range(starts[k], starts[k + 1]), form)
        for k in range(3)
    ]
    for k in (1, 2):
        assert segments[k] != segments[0]
        assert len(set(segments[k]) - set(segments[0])) > sizes[k] // 2
    # The same set on every call
    again = build_pretraining_data(
        dataclasses.replace(settings, eval_draws=3), data_dir=tmp_path, seed=2
    )
    assert all(torch.equal(again.eval_set.tensors[k], v) for k, v in draws.eval_set.tensors.items())
