"""ALBERT for pre-training (MLM + SOP), randomly initialised, from transformers.

    from agr_suite.core.config import preset
    model = build_albert(preset("model", "albert_tiny"), vocab_size=30522, max_length=512)

The architecture is a :class:`agr_suite.pretraining.config.AlbertModelConfig` (its defaults: the
configuration the authors' ALBERT code loads, ``configs/model/albert_tiny.yaml``;
``configs/model/albert_base.yaml``: ALBERT-base); any other ``AlbertConfig`` field may be
passed to :func:`build_albert` as a keyword.

``model.mlm_bias_init=unigram`` starts the MLM output bias at the log-frequencies of the
training tokens (:func:`unigram_bias`), the best answer that ignores the input.

The model is :class:`AlbertForPreTrainingAtMasks`, an ``AlbertForPreTraining`` whose forward
also takes ``mlm_positions`` ([batch, P], see :mod:`agr_suite.pretraining.text.masking`): the
MLM head then runs on those P positions only instead of on every position of the sequence. The
loss is the same number (mean cross-entropy over the predicted tokens plus the SOP
cross-entropy); the vocabulary projection, the largest cost of a small model, shrinks by
max_length / P.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AlbertConfig, AlbertForPreTraining
from transformers.models.albert.modeling_albert import AlbertForPreTrainingOutput

from agr_suite.pretraining.config import AlbertModelConfig

__all__ = ["AlbertForPreTrainingAtMasks", "albert_config", "build_albert", "unigram_bias"]

IGNORE_INDEX = -100


class AlbertForPreTrainingAtMasks(AlbertForPreTraining):
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        sentence_order_label: torch.Tensor | None = None,
        mlm_positions: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> AlbertForPreTrainingOutput:
        """As ``AlbertForPreTraining.forward``; with ``mlm_positions`` the ``prediction_logits``
        are [batch, P, vocab] at those positions and the MLM targets are ``labels`` gathered
        there (padded slots point at a position labelled -100 and are ignored)."""
        if mlm_positions is None:
            return super().forward(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                labels=labels,
                sentence_order_label=sentence_order_label,
                **kwargs,
            )
        outputs = self.albert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            return_dict=True,
            **kwargs,
        )
        sequence, pooled = outputs[:2]
        index = mlm_positions.unsqueeze(-1).expand(-1, -1, sequence.shape[-1])
        mlm_logits = self.predictions(sequence.gather(1, index))
        sop_logits = self.sop_classifier(pooled)
        loss = None
        if labels is not None and sentence_order_label is not None:
            targets = labels.gather(1, mlm_positions)
            mlm_loss = F.cross_entropy(
                mlm_logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX
            )
            loss = mlm_loss + F.cross_entropy(sop_logits, sentence_order_label.view(-1))
        return AlbertForPreTrainingOutput(
            loss=loss, prediction_logits=mlm_logits, sop_logits=sop_logits
        )


# AlbertModelConfig fields that are not AlbertConfig's: the builder's own
_BUILDER_OPTIONS = ("mlm_bias_init",)
_FIELDS = {f.name for f in dataclasses.fields(AlbertConfig)} - {
    "vocab_size",
    "max_position_embeddings",
    "pad_token_id",
}


def albert_config(
    cfg: AlbertModelConfig,
    *,
    vocab_size: int,
    max_length: int,
    pad_token_id: int = 0,
    **albert_kwargs: Any,
) -> AlbertConfig:
    """The ``AlbertConfig`` of ``cfg`` with ``albert_kwargs`` (other AlbertConfig fields)."""
    bad = sorted(set(albert_kwargs) - _FIELDS)
    if bad:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, bad))} for model {cfg.name!r}; valid "
            f"options are AlbertConfig fields such as {', '.join(sorted(cfg.options()))}"
        )
    for arg, value in {"vocab_size": vocab_size, "max_length": max_length}.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    return AlbertConfig(
        vocab_size=vocab_size,
        max_position_embeddings=max_length,
        pad_token_id=pad_token_id,
        **{
            **{k: v for k, v in cfg.options().items() if k not in _BUILDER_OPTIONS},
            **albert_kwargs,
        },
    )


def build_albert(
    cfg: AlbertModelConfig,
    *,
    vocab_size: int,
    max_length: int,
    pad_token_id: int = 0,
    token_counts: torch.Tensor | None = None,
    **albert_kwargs: Any,
) -> AlbertForPreTrainingAtMasks:
    """A randomly initialised ALBERT for MLM + SOP pre-training (see the module docstring);
    ``token_counts`` (how often each token id occurs in the training text) is needed, and only
    used, with ``cfg.mlm_bias_init == "unigram"``."""
    config = albert_config(
        cfg,
        vocab_size=vocab_size,
        max_length=max_length,
        pad_token_id=pad_token_id,
        **albert_kwargs,
    )
    model = AlbertForPreTrainingAtMasks(config)
    if cfg.mlm_bias_init == "unigram":
        if token_counts is None:
            raise ValueError("mlm_bias_init=unigram needs the training text's token_counts")
        with torch.no_grad():
            model.predictions.bias.copy_(unigram_bias(token_counts))  # tied: decoder.bias too
    return model


def unigram_bias(token_counts: torch.Tensor) -> torch.Tensor:
    """log p(token) of the training text, float32, each count + 0.5 (a token never seen
    still gets a finite bias); softmax of it is the add-half unigram model."""
    counts = token_counts.double() + 0.5
    return (counts.log() - counts.sum().log()).float()
