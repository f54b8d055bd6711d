"""Table 3's settings: the sentence-pair data (``agr_suite_schema/dataset/text``) and ALBERT
(``agr_suite_schema/model/albert``), with their checks and sources."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agr_suite.core.config import (
    ALBERT,
    ALBERT_CONFIG,
    ALBERT_MODEL_CODE,
    DatasetConfig,
    ModelConfig,
    _check,
    _number,
    at_least,
    fraction,
    one_of,
    register_schema,
    setting,
)

MLM_BIAS_INITS = ("zeros", "unigram")


@dataclass
class TextDatasetConfig(DatasetConfig):
    """Sentence-pair examples for ALBERT's MLM + SOP (Table 3); sources in wikitext2.yaml."""

    variant: str = _check(
        one_of(("raw", "tokens")),
        "raw",
        f"[choice: the original text; the authors' {ALBERT} reads the tokenised "
        "wiki.*.tokens files (rare words as <unk>): variant=tokens for theirs]",
    )
    eval_split: str = _check(
        one_of(("test", "validation")),
        "test",
        f"[code: {ALBERT}] --test_file wiki.test.tokens, scored after every epoch",
    )
    tokenizer: str = _check(
        (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
        "wordpiece",
        f"[choice: a WordPiece vocabulary trained on the train split, so it runs offline; the "
        f"authors' {ALBERT} loads BERT's uncased vocab.txt, not in their repository]",
    )
    vocab_size: int = _check(
        at_least(16),
        30522,
        f"[choice: the size of BERT's uncased vocabulary, the vocab_size of {ALBERT_CONFIG}]",
    )
    lowercase: bool = setting(True, source=f"[code: {ALBERT}] do_lower_case=True")
    max_length: int = _check(at_least(8), 512, f"[choice: max_len 512 of {ALBERT_CONFIG}]")
    short_seq_prob: float = _check(
        fraction(), 0.1, f"[code: {ALBERT}] SentPairDataLoader's short_sampling_prob"
    )
    mask_prob: float = _check(fraction(low_open=True), 0.15, f"[code: {ALBERT}] --mask_prob")
    max_ngram: int = _check(at_least(1), 3, f"[code: {ALBERT}] --max_gram")
    max_predictions: int = _check(at_least(1), 75, f"[code: {ALBERT}] --max_pred")
    # BERT's 80/10/10 rule; the Table 3 presets set the authors' 1.0 and 0.0
    mask_token_fraction: float = _check(
        fraction(),
        0.8,
        "[choice: BERT's and ALBERT's 80/10/10 rule; the authors' Albert/utils.py masks every "
        "predicted position (1.0 and 0.0), which the Table 3 presets set]",
    )
    random_token_fraction: float = _check(
        fraction(), 0.1, "[choice: BERT's 80/10/10 rule, as mask_token_fraction]"
    )
    eval_seed: int = _check(
        at_least(0),
        0,
        "[choice] one fixed evaluation set for every run and epoch, seeded apart from the run",
    )
    # 1: the evaluation split laid out once, one example per sentence pair. More draws score
    # the same text under more cut points, swaps and masks (draw k: seed eval_seed + k), so a
    # small split gives a less noisy SOP accuracy; Table 3 sets 20.
    eval_draws: int = _check(
        at_least(1),
        1,
        "[choice] the split laid out once, as the authors' one pass; Table 3 sets 20 draws",
    )

    def problems(self, cfg: Any) -> list[str]:
        total = self.mask_token_fraction + self.random_token_fraction
        if total <= 1:
            return []
        return [
            f"  dataset.mask_token_fraction + dataset.random_token_fraction = {total}: "
            "must be <= 1 (the rest keeps the original token)"
        ]


@dataclass
class AlbertModelConfig(ModelConfig):
    """ALBERT for MLM + SOP; defaults: the tiny configuration the authors' ALBERT code loads by
    default, config/albert_unittest.json of the ALBERT-Pytorch code they forked, a file their
    repository does not contain [choice: that file's values]. The maximum length comes from
    ``dataset.max_length``, the vocabulary from the tokenizer."""

    task: str = "pretraining"
    embedding_size: int = _check(at_least(1), 24, f"[choice: {ALBERT_CONFIG}]")
    hidden_size: int = _check(at_least(1), 64, f"[choice: {ALBERT_CONFIG}]")
    intermediate_size: int = _check(at_least(1), 256, f"[choice: {ALBERT_CONFIG}]")
    num_hidden_layers: int = _check(at_least(1), 6, f"[choice: {ALBERT_CONFIG}]")
    num_attention_heads: int = _check(at_least(1), 1, f"[choice: {ALBERT_CONFIG}]")
    # erf GELU, hidden dropout 0.1, no attention dropout
    hidden_act: str = setting("gelu", source=ALBERT_MODEL_CODE)
    hidden_dropout_prob: float = _check(fraction(high_open=True), 0.1, ALBERT_MODEL_CODE)
    attention_probs_dropout_prob: float = _check(fraction(high_open=True), 0.0, ALBERT_MODEL_CODE)
    # the standard deviation of the initial weights
    initializer_range: float = _check(
        (lambda v: _number(v) and v > 0, "a number > 0"),
        0.02,
        "[choice: transformers' AlbertConfig default; the authors' model code is not in their "
        "repository]",
    )
    # zeros: the MLM output bias starts at 0 (transformers'); unigram: at each token's
    # log-frequency in the training text (agr_suite.pretraining.albert.unigram_bias), so the
    # model starts at the input-free answer instead of spending thousands of Adam steps (each
    # moving a bias by about lr) on the tokens' frequencies
    mlm_bias_init: str = _check(one_of(MLM_BIAS_INITS), "zeros", "[choice: transformers']")

    def problems(self, cfg: Any) -> list[str]:
        if self.hidden_size % self.num_attention_heads == 0:
            return []
        return [
            f"  model.hidden_size={self.hidden_size} must be a multiple of "
            f"model.num_attention_heads={self.num_attention_heads}"
        ]


register_schema("dataset", "text", TextDatasetConfig)
register_schema("model", "albert", AlbertModelConfig)
