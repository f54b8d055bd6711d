"""ALBERT's n-gram masking for the masked-language-model targets.

A sequence's non-special tokens are grouped into words (a word is a token that starts one plus
the continuation pieces after it). The budget is ``min(max_predictions, max(1,
round(mask_prob * non-special tokens)))`` tokens. Words are visited in random order; at each an
n-gram length is drawn with p(n) proportional to 1/n (n = 1..max_ngram, as in ALBERT), and the
n-gram of consecutive words starting there is chosen unless it overlaps one chosen before. An
n-gram never crosses a special token, and it is shortened (by whole words) to fit what is left
of the budget. Every chosen token then becomes [MASK] with probability ``mask_token_fraction``,
a random non-special token with probability ``random_token_fraction``, and stays as it is
otherwise (80/10/10 by default).

The random draws come from ``generator`` (None: torch's global RNG, which the engine seeds,
DataLoader workers included).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["IGNORE_INDEX", "MaskingRule", "choose_masked_positions", "mask_sequence", "word_spans"]

IGNORE_INDEX = -100  # the label of a position that is not predicted (transformers' convention)


@dataclass(frozen=True)
class MaskingRule:
    mask_prob: float = 0.15
    max_ngram: int = 3
    max_predictions: int = 75
    mask_token_fraction: float = 0.8
    random_token_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.mask_prob <= 1:
            raise ValueError(f"mask_prob must be in (0, 1], got {self.mask_prob}")
        if self.max_ngram < 1 or self.max_predictions < 1:
            raise ValueError("max_ngram and max_predictions must be >= 1")
        fractions = (self.mask_token_fraction, self.random_token_fraction)
        if min(fractions) < 0 or sum(fractions) > 1:
            raise ValueError(
                "mask_token_fraction and random_token_fraction must be >= 0 with a sum <= 1, "
                f"got {fractions}"
            )

    def budget(self, tokens: int) -> int:
        """How many of ``tokens`` non-special tokens to predict."""
        return min(self.max_predictions, max(1, round(tokens * self.mask_prob)))

    def ngram_probabilities(self) -> Tensor:
        weights = 1.0 / torch.arange(1, self.max_ngram + 1, dtype=torch.float64)
        return weights / weights.sum()


def word_spans(special: list[bool], word_starts: list[bool]) -> list[tuple[int, int]]:
    """``[start, end)`` positions of each word; a special token ends a word."""
    spans: list[list[int]] = []
    for position, (is_special, starts) in enumerate(zip(special, word_starts)):
        if is_special:
            continue
        if starts or not spans or spans[-1][1] != position:
            spans.append([position, position + 1])
        else:
            spans[-1][1] = position + 1
    return [(start, end) for start, end in spans]


def choose_masked_positions(
    spans: list[tuple[int, int]],
    budget: int,
    rule: MaskingRule,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Sorted positions to predict: whole-word n-grams, at most ``budget`` tokens."""
    if not spans:
        return []
    order = torch.randperm(len(spans), generator=generator).tolist()
    lengths = torch.multinomial(
        rule.ngram_probabilities(), len(spans), replacement=True, generator=generator
    )
    chosen: set[int] = set()
    for first, n in zip(order, (lengths + 1).tolist()):
        left = budget - len(chosen)
        if left <= 0:
            break
        last = first  # extend over up to n adjacent words (no special token in between)
        while (
            last + 1 - first < n and last + 1 < len(spans) and spans[last + 1][0] == spans[last][1]
        ):
            last += 1
        while last >= first and spans[last][1] - spans[first][0] > left:
            last -= 1
        if last < first:
            continue
        positions = range(spans[first][0], spans[last][1])
        if chosen.isdisjoint(positions):
            chosen.update(positions)
    return sorted(chosen)


def mask_sequence(
    input_ids: Tensor,
    special: Tensor,
    word_starts: Tensor,
    *,
    rule: MaskingRule,
    mask_id: int,
    replacement_ids: Tensor,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(masked input ids, labels, positions) for one sequence.

    ``labels`` holds the original id at every chosen position and :data:`IGNORE_INDEX`
    elsewhere; ``positions`` lists the chosen positions, padded with 0 to
    ``rule.max_predictions`` (position 0 is [CLS], whose label is IGNORE_INDEX, so a padded
    slot is ignored wherever the labels are gathered at the positions).
    """
    special_list = special.tolist()
    spans = word_spans(special_list, word_starts.tolist())
    budget = rule.budget(len(special_list) - sum(special_list))
    chosen = torch.tensor(choose_masked_positions(spans, budget, rule, generator), dtype=torch.long)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[chosen] = input_ids[chosen]
    masked = input_ids.clone()
    draw = torch.rand(len(chosen), generator=generator)
    random_ids = replacement_ids[
        torch.randint(len(replacement_ids), (len(chosen),), generator=generator)
    ]
    to_mask = draw < rule.mask_token_fraction
    to_random = ~to_mask & (draw < rule.mask_token_fraction + rule.random_token_fraction)
    masked[chosen[to_mask]] = mask_id
    masked[chosen[to_random]] = random_ids[to_random].to(masked.dtype)
    positions = torch.zeros(rule.max_predictions, dtype=torch.long)
    positions[: len(chosen)] = chosen
    return masked, labels, positions
