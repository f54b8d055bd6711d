"""One verdict per paired comparison: is the difference real, negligible, or unknown, and can
the data say at all?

The data of a comparison are its paired differences d_1..d_n (compared arm minus baseline,
same seed). With mean d, sample sd s, df = n - 1, two-sided alpha 0.05:

- **not informative** comes first: the caller (report.tables) passes a reason when the data
  cannot carry a verdict (both arms constant across seeds, every run at the level a model
  ignoring its input scores, or predictions of one class in every run); such a comparison
  gets no test, counts in its family's Holm correction with p = 1, and reads
  ``not informative (<reason>)``. A comparison with fewer than 2 pairs is untested too and
  counts the same way.
- **difference test**: the paired t-test of d = 0 with the sd floored at the metric's
  *resolution* (its smallest possible step, e.g. one evaluated example of an accuracy),
  s' = max(s, resolution): differences in steps of one example cannot be known more finely
  than that, so a zero or tiny sd never turns into certainty. With fewer than 3 pairs, or
  s' = 0 (no resolution known and every difference equal), the exact sign-flip test instead:
  all 2^n sign patterns of the differences, p = share of patterns whose |sum| reaches the
  observed one (p >= 2 / 2^n, so two pairs can never give p < 0.5).
- **equivalence** against a margin m: two one-sided tests (TOST, Schuirmann 1987) of the
  same kind (t with s', or sign-flip on d + m and d - m), p = the larger of the two.
- **MDE**: the smallest |effect| the t-test detects with 80% power at s' and n, from the
  noncentral t (nc = effect * sqrt n / s'), at the family's planning level;
- **seeds needed**: the fewest pairs with 80% power against the margin at s', same level.

Families: a table's comparisons form two Holm families (Holm 1979), the *primary* endpoint
(one metric, fixed in the spec before the runs) and the *secondary* rest, each corrected
within itself. Power is planned at alpha / m, the level Holm's first step uses for a family
of m comparisons (the plan is then right whatever the other comparisons show).

Verdict texts: ``<column> better|worse`` when the difference test rejects (``…, within ±m``
when the whole 95% interval lies inside the margin: real but smaller than what the table
calls relevant), ``equivalent (±m)`` when TOST rejects, otherwise ``inconclusive (≈N seeds
needed)``.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 10_000
MIN_T_PAIRS = 3  # fewer pairs: the exact sign-flip test
FAMILIES = ("primary", "secondary")
EXACT_SIGN_FLIP_LIMIT = 20
"""The sign-flip test enumerates all 2^n patterns up to this many pairs; beyond, it is only
used for a zero sd, where its p-value has a closed form."""
_TIE = 1e-9  # relative tolerance for "as extreme as observed" among sign patterns


# --------------------------------------------------------------------------- summaries


@dataclass
class Summary:
    n: int
    mean: float
    std: float  # sample std (ddof 1); NaN when n < 2
    low: float = math.nan  # 95% t-interval of the mean (with ``interval``)
    high: float = math.nan


def summarize(values: Iterable[float], interval: bool = False) -> Summary:
    """Mean and sample std of ``values``, and with ``interval`` the 95% t-interval of the
    mean (NaN below 2 values)."""
    data = [float(v) for v in values]
    n = len(data)
    if n == 0:
        return Summary(0, math.nan, math.nan)
    mean = statistics.fmean(data)
    if n < 2:
        return Summary(n, mean, math.nan)
    std = statistics.stdev(data)  # exact arithmetic: equal values give exactly 0
    if not interval:
        return Summary(n, mean, std)
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


# --------------------------------------------------------------------------- exact sign flips


def sign_flip_p(differences: Sequence[float], alternative: str = "two-sided") -> float:
    """Exact paired permutation (sign-flip) p-value of the mean of ``differences`` being 0.

    Under the null each difference is as likely positive as negative, so the 2^n sign
    patterns are equally likely; the p-value is the share of patterns whose sum is at least
    as extreme as the observed sum (``greater``: >=, ``less``: <=, ``two-sided``: |sum| >=)."""
    data = [float(d) for d in differences]
    n = len(data)
    if n == 0 or not all(math.isfinite(d) for d in data):
        return math.nan
    observed = math.fsum(data)
    tolerance = _TIE * max(1.0, math.fsum(abs(d) for d in data))
    if len(set(data)) == 1 or n > EXACT_SIGN_FLIP_LIMIT:
        return _constant_sign_flip_p(data, alternative)
    extreme = 0
    for signs in itertools.product((1.0, -1.0), repeat=n):
        total = math.fsum(s * d for s, d in zip(signs, data))
        if alternative == "greater":
            extreme += total >= observed - tolerance
        elif alternative == "less":
            extreme += total <= observed + tolerance
        else:
            extreme += abs(total) >= abs(observed) - tolerance
    return extreme / 2**n


def _constant_sign_flip_p(data: list[float], alternative: str) -> float:
    """The sign-flip p-value when every difference equals c: the sum of a pattern is c times
    (pluses - minuses), so only the all-plus (and for two sides the all-minus) pattern is
    as extreme as c * n."""
    if len(set(data)) != 1:
        raise ValueError(
            f"{len(data)} pairs are too many to enumerate their 2^n sign patterns; this test "
            "is only used with fewer than 3 pairs or a zero sd"
        )
    c, n = data[0], len(data)
    if c == 0:
        return 1.0
    if alternative == "two-sided":
        return min(1.0, 2 / 2**n)
    as_extreme_one_way = 1 / 2**n  # the pattern with every sign as observed
    toward = (c > 0) == (alternative == "greater")
    return as_extreme_one_way if toward else 1.0


# --------------------------------------------------------------------------- t-tests


def difference_p(mean: float, sd: float, n: int) -> float:
    """Two-sided paired t-test p-value of mean = 0 at a (floored) sd > 0 (NaN below 2)."""
    if n < 2 or not math.isfinite(mean) or not sd > 0:
        return math.nan
    t = abs(mean) / (sd / math.sqrt(n))
    return float(2 * stats.t.sf(t, n - 1))


def tost_p(mean: float, sd: float, n: int, margin: float) -> float:
    """p-value of the two one-sided t-tests that |true mean| < margin (sd > 0, n >= 2)."""
    if n < 2 or not math.isfinite(mean) or not sd > 0:
        return math.nan
    se = sd / math.sqrt(n)
    lower = stats.t.sf((mean + margin) / se, n - 1)  # H0: true mean <= -margin
    upper = stats.t.cdf((mean - margin) / se, n - 1)  # H0: true mean >= +margin
    return float(max(lower, upper))


def sign_flip_tost_p(differences: Sequence[float], margin: float) -> float:
    """TOST by sign flips: d + m tested against 0 from above, d - m from below."""
    lower = sign_flip_p([d + margin for d in differences], "greater")
    upper = sign_flip_p([d - margin for d in differences], "less")
    return max(lower, upper)


# --------------------------------------------------------------------------- power


def power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test at |true mean| = effect (sd > 0)."""
    if n < 2 or not sd > 0:
        return math.nan
    df, critical = n - 1, stats.t.ppf(1 - alpha / 2, n - 1)
    nc = abs(effect) * math.sqrt(n) / sd
    lower = float(stats.nct.cdf(-critical, df, nc))
    # scipy returns NaN for this far tail at a large shift (one or two pairs), where it is
    # below 1e-15 of the total
    lower = lower if math.isfinite(lower) else 0.0
    return float(stats.nct.sf(critical, df, nc)) + lower


def minimum_detectable_effect(
    sd: float, n: int, alpha: float = ALPHA, target: float = POWER
) -> float:
    """The effect the paired t-test finds with ``target`` power (NaN below 2 pairs or sd 0)."""
    if n < 2 or not math.isfinite(sd) or not sd > 0:
        return math.nan
    # start near the normal approximation (the t version is larger), so the noncentral t
    # is never evaluated far out in its tail, where scipy returns NaN
    high = 3.0 * sd / math.sqrt(n)
    while power(high, sd, n, alpha) < target:
        high *= 2
    return float(optimize.brentq(lambda e: power(e, sd, n, alpha) - target, 0.0, high, xtol=1e-12))


def seeds_needed(
    margin: float, sd: float, alpha: float = ALPHA, target: float = POWER
) -> int | None:
    """The fewest pairs with ``target`` power against ``margin`` at level ``alpha`` (None
    past MAX_SEEDS or without a positive sd); at least 3, the fewest the t-test is used
    with (below, the sign-flip test cannot reach alpha 0.05)."""
    if not math.isfinite(sd) or not sd > 0:
        return None
    for n in range(MIN_T_PAIRS, MAX_SEEDS + 1):
        if power(margin, sd, n, alpha) >= target:
            return n
    return None


def planning_level(family_size: int) -> float:
    """The level a family of m comparisons is planned at: alpha / m, Holm's first step."""
    return ALPHA / max(1, family_size)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and are not counted)."""
    ranked = sorted((p, i) for i, p in enumerate(p_values) if math.isfinite(p))
    adjusted = [math.nan] * len(p_values)
    running, m = 0.0, len(ranked)
    for k, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, (m - k) * p))
        adjusted[i] = running
    return adjusted


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Comparison:
    """One paired comparison as the verdict sees it."""

    column: str  # the compared arm, named in "better"/"worse"
    differences: tuple[float, ...]  # per seed, compared minus baseline
    margin: float | None
    higher_is_better: bool
    resolution: float = 0.0  # the metric's smallest step: the sd is floored at it
    not_informative: str | None = None  # why the data cannot carry a verdict
    family: str = "primary"  # "primary" or "secondary"


@dataclass(frozen=True)
class Verdict:
    mde: float  # effect with 80% power at the (floored) sd, n and the family's level
    seeds_for_margin: int | None  # pairs for 80% power against the margin at that level
    p_difference: float  # Holm-adjusted within the family (NaN when not tested)
    p_equivalence: float  # Holm-adjusted within the family (NaN without a margin)
    method: str  # how it was tested: "t (sd ≥ r)", "sign-flip (2^n)", "—"
    family: str
    family_size: int
    text: str


def _raw_tests(c: Comparison) -> tuple[float, float, float, str]:
    """(p difference, p equivalence, floored sd, method) before the Holm correction."""
    data, n = list(c.differences), len(c.differences)
    if c.not_informative is not None or n < 2:
        return math.nan, math.nan, math.nan, "—"
    mean, sd = statistics.fmean(data), statistics.stdev(data)
    floored = max(sd, c.resolution)
    if n < MIN_T_PAIRS or floored == 0:
        p_diff = sign_flip_p(data)
        p_tost = sign_flip_tost_p(data, c.margin) if c.margin is not None else math.nan
        return p_diff, p_tost, floored, f"sign-flip (2^{n})"
    p_tost = tost_p(mean, floored, n, c.margin) if c.margin is not None else math.nan
    method = f"t (sd ≥ {c.resolution:.2g})" if floored > sd else "t"
    return difference_p(mean, floored, n), p_tost, floored, method


def verdicts(comparisons: list[Comparison]) -> list[Verdict]:
    """Verdicts for one table's comparisons, Holm-corrected within each family."""
    raw = [_raw_tests(c) for c in comparisons]
    sizes = {family: sum(c.family == family for c in comparisons) for family in FAMILIES}
    adjusted: dict[int, list[float]] = {}
    for family in FAMILIES:
        members = [i for i, c in enumerate(comparisons) if c.family == family]
        for test in (0, 1):  # the difference test, then equivalence
            # an untested comparison (not informative, fewer than 2 pairs) still counts in
            # its family, with p = 1, so that the family is the size the plan was made for
            counted = [raw[i][test] if math.isfinite(raw[i][test]) else 1.0 for i in members]
            for i, p in zip(members, holm(counted)):
                adjusted.setdefault(i, []).append(p if math.isfinite(raw[i][test]) else math.nan)
    return [
        _verdict(c, *adjusted[i], *raw[i][2:], sizes[c.family]) for i, c in enumerate(comparisons)
    ]


def _verdict(
    c: Comparison, p_diff: float, p_tost: float, floored: float, method: str, family_size: int
) -> Verdict:
    level, n = planning_level(family_size), len(c.differences)
    needed = (
        seeds_needed(c.margin, floored, level)
        if c.margin is not None and n >= 2 and c.not_informative is None
        else None
    )
    return Verdict(
        mde=minimum_detectable_effect(floored, n, level),
        seeds_for_margin=needed,
        p_difference=p_diff,
        p_equivalence=p_tost,
        method=method,
        family=c.family,
        family_size=family_size,
        text=_text(c, p_diff, p_tost, floored, needed),
    )


def _text(c: Comparison, p_diff: float, p_tost: float, sd: float, needed: int | None) -> str:
    n, m = len(c.differences), c.margin
    if c.not_informative is not None:
        return f"not informative ({c.not_informative})"
    if n < 2:
        return f"inconclusive ({n} pair{'s' if n != 1 else ''})"
    mean = statistics.fmean(c.differences)
    if p_diff < ALPHA:
        text = f"{c.column} {'better' if (mean > 0) == c.higher_is_better else 'worse'}"
        interval = summarize(c.differences, interval=True)
        if m is not None and -m < interval.low and interval.high < m:
            text += f", within ±{m:g}"
        return text
    if m is not None and p_tost < ALPHA:
        return f"equivalent (±{m:g})"
    if m is None:
        return "inconclusive (no margin declared)"
    if not sd > 0:
        return "inconclusive (no spread to plan seeds from)"
    if needed is None:
        return f"inconclusive (>{MAX_SEEDS} seeds needed)"
    return f"inconclusive (≈{needed} seeds needed)"
