"""ALBERT for pre-training (MLM + SOP), randomly initialised, from transformers.

    model = build_albert("albert_tiny", vocab_size=30522, max_length=512)
    model = build_albert("albert_base", vocab_size=30000, max_length=512, hidden_dropout_prob=0.1)

Presets (any ``AlbertConfig`` field given as an option overrides them):

- ``albert_tiny``: the configuration the authors' ALBERT code loads by default
  (``config/albert_unittest.json`` of the ALBERT-Pytorch code they forked): embedding 24,
  hidden 64, feed-forward 256, 6 layers, 1 head, max length 512; GELU (erf) and hidden
  dropout 0.1 as in that code's model, no attention dropout.
- ``albert_base``: ALBERT-base (Lan et al. 2020; ``albert-base-v2``): embedding 128, hidden
  768, feed-forward 3072, 12 layers, 12 heads, ``gelu_new``, no dropout.

The model is :class:`AlbertForPreTrainingAtMasks`, an ``AlbertForPreTraining`` whose forward
also takes ``mlm_positions`` ([batch, P], see :mod:`agr_suite.data.text.masking`): the MLM head then
runs on those P positions only instead of on every position of the sequence. The loss is the
same number (mean cross-entropy over the predicted tokens plus the SOP cross-entropy); the
vocabulary projection, the largest cost of a small model, shrinks by max_length / P.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AlbertConfig, AlbertForPreTraining
from transformers.models.albert.modeling_albert import AlbertForPreTrainingOutput

__all__ = ["PRESETS", "AlbertForPreTrainingAtMasks", "albert_config", "build_albert"]

PRESETS: dict[str, dict[str, Any]] = {
    "albert_tiny": {
        "embedding_size": 24,
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 6,
        "num_attention_heads": 1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.0,
    },
    "albert_base": {
        "embedding_size": 128,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "hidden_act": "gelu_new",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
}

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


_FIELDS = {f.name for f in dataclasses.fields(AlbertConfig)} - {
    "vocab_size",
    "max_position_embeddings",
    "pad_token_id",
}


def albert_config(
    name: str, *, vocab_size: int, max_length: int, pad_token_id: int = 0, **options: Any
) -> AlbertConfig:
    """The ``AlbertConfig`` of preset ``name`` with ``options`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown ALBERT preset {name!r}; choose one of: {', '.join(PRESETS)}")
    bad = sorted(set(options) - _FIELDS)
    if bad:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, bad))} for model {name!r}; valid options "
            f"are AlbertConfig fields such as {', '.join(PRESETS[name])}"
        )
    for arg, value in {"vocab_size": vocab_size, "max_length": max_length}.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    settings = {**PRESETS[name], **options}
    return AlbertConfig(
        vocab_size=vocab_size,
        max_position_embeddings=max_length,
        pad_token_id=pad_token_id,
        **settings,
    )


def build_albert(
    name: str, *, vocab_size: int, max_length: int, pad_token_id: int = 0, **options: Any
) -> AlbertForPreTrainingAtMasks:
    """A randomly initialised ALBERT for MLM + SOP pre-training (see the module docstring)."""
    config = albert_config(
        name, vocab_size=vocab_size, max_length=max_length, pad_token_id=pad_token_id, **options
    )
    return AlbertForPreTrainingAtMasks(config)
