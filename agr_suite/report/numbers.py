"""How the tables print a number: the spec's decimals, but never a nonzero value as 0."""

from __future__ import annotations

import math
from collections.abc import Iterable

from agr_suite.report.verdicts import Summary

MINUS = "\u2212"  # typographic minus for the tables' leading signs


def _significant(value: float, sign: str) -> str:
    """Two significant digits: plain decimals down to 1e-4 (0.0024, 0.00012), scientific
    below (2.8e-06); values of 10 and more keep all their integer digits."""
    magnitude = abs(value)
    if magnitude < 1e-4:
        return f"{value:{sign}.1e}"
    places = max(0, 1 - math.floor(math.log10(magnitude)))
    text = f"{value:{sign}.{places}f}"
    if abs(float(text)) >= 10 ** (2 - places):  # 0.0996 -> 0.100: rounded up a decade
        text = f"{value:{sign}.{max(0, places - 1)}f}"
    return text


def _rounds_to_zero(value: float, decimals: int) -> bool:
    return value != 0 and float(f"{abs(value):.{decimals}f}") == 0


def format_number(
    value: float, decimals: int, sign: bool = False, significant: bool = False
) -> str:
    """A table number that never shows a nonzero value as zero.

    - exactly 0 prints as ``0`` (no sign, no decimals); NaN/inf as ``—``;
    - otherwise ``decimals`` places (the spec's), unless that would round to 0: then two
      significant digits (``0.0024``, ``2.8e-06``), or always so with ``significant``;
    - ``sign`` prints a leading + on positive values; a negative sign is ``−`` (U+2212).
    """
    if not math.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    mark = "+" if sign else ""
    if significant or _rounds_to_zero(value, decimals):
        text = _significant(value, mark)
    else:
        text = f"{value:{mark}.{decimals}f}"
    return MINUS + text[1:] if text.startswith("-") else text


def format_interval(mean: float, low: float, high: float, decimals: int, sign: bool = True) -> str:
    """``mean [low, high]`` (signed, for a difference, unless ``sign`` is False). The three
    share one style: the spec's decimals, or, when any nonzero one of them would round to 0
    there, two significant digits each."""
    values = [v for v in (mean, low, high) if math.isfinite(v)]
    significant = any(_rounds_to_zero(v, decimals) for v in values)
    mean_text, low_text, high_text = (
        format_number(v, decimals, sign=sign, significant=significant) for v in (mean, low, high)
    )
    return f"{mean_text} [{low_text}, {high_text}]"


def format_mean_std(summary: Summary, decimals: int) -> str:
    """``mean ± std`` (``mean`` alone for one value, ``—`` for none), each by format_number."""
    if summary.n == 0:
        return "—"
    if summary.n == 1:
        return format_number(summary.mean, decimals)
    return f"{format_number(summary.mean, decimals)} ± {format_number(summary.std, decimals)}"


def format_difference(summary: Summary, differences: Iterable[float], decimals: int) -> str:
    """A paired difference: ``mean [95% interval] (pairs)``; ``0 (identical in all n seeds)``
    when every pair is equal; ``mean (1)`` with a single pair; ``—`` with none."""
    if summary.n == 0:
        return "—"
    values = list(differences)
    if values and all(v == 0 for v in values):
        return f"0 (identical in {'the 1 seed' if summary.n == 1 else f'all {summary.n} seeds'})"
    if summary.n == 1:
        return f"{format_number(summary.mean, decimals, sign=True)} (1)"
    return f"{format_interval(summary.mean, summary.low, summary.high, decimals)} ({summary.n})"


def percent_units(label: str) -> tuple[str, str]:
    """(suffix for a level, suffix for a distance): ('%', ' pp') for a percentage metric."""
    return ("%", " pp") if "%" in label else ("", "")
