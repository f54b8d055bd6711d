"""One verdict per paired comparison: is the difference real, negligible, or unknown?

For a paired difference over n seeds (mean d, sample sd s, df = n - 1), two-sided alpha 0.05:

- difference test: paired t-test of d = 0, p = 2 * (1 - F_t(|d| / (s / sqrt n)));
- equivalence (two one-sided tests, TOST) against a margin m: p = max(P(T > (d + m) / se),
  P(T < (d - m) / se)); both one-sided tests at alpha, as in Schuirmann (1987);
- minimum detectable effect (MDE): the smallest |effect| the paired t-test detects with 80%
  power at this n and s, from the noncentral t (nc = effect * sqrt n / s);
- seeds needed: the smallest n with 80% power against the margin at the observed s.

The p-values of a table's comparisons are Holm-corrected (Holm 1979) as one family per test
kind, then: ``<column> better|worse`` when the difference test rejects, ``equivalent (±m)``
when TOST rejects, otherwise ``inconclusive (≈N seeds needed)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 10_000


def difference_p(mean: float, sd: float, n: int) -> float:
    """Two-sided paired t-test p-value of mean = 0 (NaN with fewer than 2 pairs)."""
    if n < 2 or not math.isfinite(mean):
        return math.nan
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    t = abs(mean) / (sd / math.sqrt(n))
    return float(2 * stats.t.sf(t, n - 1))


def tost_p(mean: float, sd: float, n: int, margin: float) -> float:
    """p-value of the two one-sided tests that |true mean| < margin (NaN below 2 pairs)."""
    if n < 2 or not math.isfinite(mean):
        return math.nan
    if sd == 0:
        return 0.0 if abs(mean) < margin else 1.0
    se = sd / math.sqrt(n)
    lower = stats.t.sf((mean + margin) / se, n - 1)  # H0: true mean <= -margin
    upper = stats.t.cdf((mean - margin) / se, n - 1)  # H0: true mean >= +margin
    return float(max(lower, upper))


def power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test at |true mean| = effect."""
    if n < 2:
        return math.nan
    if sd == 0:
        return 1.0 if effect > 0 else alpha
    df, critical = n - 1, stats.t.ppf(1 - alpha / 2, n - 1)
    nc = abs(effect) * math.sqrt(n) / sd
    lower = float(stats.nct.cdf(-critical, df, nc))
    # scipy returns NaN for this far tail at a large shift (one or two pairs), where it is
    # below 1e-15 of the total
    lower = lower if math.isfinite(lower) else 0.0
    return float(stats.nct.sf(critical, df, nc)) + lower


def minimum_detectable_effect(sd: float, n: int, target: float = POWER) -> float:
    """The effect the paired t-test finds with ``target`` power (NaN below 2 pairs)."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    # start near the normal approximation (the t version is larger), so the noncentral t
    # is never evaluated far out in its tail, where scipy returns NaN
    high = 3.0 * sd / math.sqrt(n)
    while power(high, sd, n) < target:
        high *= 2
    return float(optimize.brentq(lambda e: power(e, sd, n) - target, 0.0, high, xtol=1e-12))


def seeds_needed(margin: float, sd: float, target: float = POWER) -> int | None:
    """The fewest pairs with ``target`` power against ``margin`` (None past MAX_SEEDS)."""
    if not math.isfinite(sd):
        return None
    if sd == 0:
        return 2
    for n in range(2, MAX_SEEDS + 1):
        if power(margin, sd, n) >= target:
            return n
    return None


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and are not counted)."""
    ranked = sorted((p, i) for i, p in enumerate(p_values) if math.isfinite(p))
    adjusted = [math.nan] * len(p_values)
    running, m = 0.0, len(ranked)
    for k, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, (m - k) * p))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Verdict:
    mde: float  # effect with 80% power at the observed sd and n
    seeds_for_margin: int | None  # pairs for 80% power against the margin
    p_difference: float  # Holm-adjusted
    p_equivalence: float  # Holm-adjusted (NaN without a margin)
    text: str


def verdicts(
    comparisons: list[tuple[str, float, float, int, float | None, bool]],
) -> list[Verdict]:
    """Verdicts for one table's comparisons, each (compared column, mean difference, sd of
    the differences, pairs, margin or None, higher is better); Holm across the table."""
    raw_diff = [difference_p(d, s, n) for _, d, s, n, _, _ in comparisons]
    raw_tost = [
        tost_p(d, s, n, m) if m is not None else math.nan for _, d, s, n, m, _ in comparisons
    ]
    adj_diff, adj_tost = holm(raw_diff), holm(raw_tost)
    out = []
    for (column, d, s, n, m, higher), p_diff, p_tost in zip(comparisons, adj_diff, adj_tost):
        needed = seeds_needed(m, s) if m is not None and n >= 2 else None
        if n < 2:
            text = f"inconclusive ({n} pair{'s' if n != 1 else ''})"
        elif p_diff < ALPHA:
            text = f"{column} {'better' if (d > 0) == higher else 'worse'}"
        elif m is not None and p_tost < ALPHA:
            text = f"equivalent (±{m:g})"
        elif m is None:
            text = "inconclusive (no margin declared)"
        elif needed is None:
            text = f"inconclusive (>{MAX_SEEDS} seeds needed)"
        else:
            text = f"inconclusive (≈{needed} seeds needed)"
        out.append(Verdict(minimum_detectable_effect(s, n), needed, p_diff, p_tost, text))
    return out
