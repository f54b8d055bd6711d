"""agr_suite.verdicts against independent references: scipy's own t-tests, a normal-approximation
power formula, a Monte Carlo power estimate, and Holm's procedure worked by hand."""

import math

import numpy as np
import pytest
from scipy import stats

from agr_suite.verdicts import (
    difference_p,
    holm,
    minimum_detectable_effect,
    power,
    seeds_needed,
    tost_p,
    verdicts,
)

DIFFS = [0.4, 1.1, -0.2, 0.9, 0.6]  # a hand example: per-seed paired differences


def moments(values):
    return float(np.mean(values)), float(np.std(values, ddof=1)), len(values)


def test_difference_p_is_scipys_paired_t_test():
    want = stats.ttest_1samp(DIFFS, 0.0).pvalue
    assert difference_p(*moments(DIFFS)) == pytest.approx(want, rel=1e-12)


def test_tost_is_two_one_sided_scipy_tests():
    margin = 1.0
    lower = stats.ttest_1samp(DIFFS, -margin, alternative="greater").pvalue
    upper = stats.ttest_1samp(DIFFS, margin, alternative="less").pvalue
    assert tost_p(*moments(DIFFS), margin) == pytest.approx(max(lower, upper), rel=1e-12)
    # mean 0.56, sd 0.51: +-0.2 cannot be claimed
    assert tost_p(*moments(DIFFS), 0.2) > 0.5


def test_mde_for_many_seeds_matches_the_normal_approximation():
    # n = 400: (z_0.975 + z_0.8) / sqrt(n) = 0.1401 sd; the t correction is below 0.5%.
    approx = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) / math.sqrt(400)
    assert minimum_detectable_effect(1.0, 400) == pytest.approx(approx, rel=5e-3)
    assert minimum_detectable_effect(2.0, 400) == pytest.approx(2 * approx, rel=5e-3)


def test_power_at_the_mde_is_80_percent_by_simulation():
    n, sd = 5, 1.0
    effect = minimum_detectable_effect(sd, n)
    rng = np.random.default_rng(0)
    samples = rng.normal(effect, sd, size=(200_000, n))
    t = samples.mean(1) / (samples.std(1, ddof=1) / math.sqrt(n))
    rejected = np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1))
    assert rejected == pytest.approx(0.8, abs=0.005)  # binomial sd 0.0009
    assert power(effect, sd, n) == pytest.approx(0.8, abs=1e-9)


@pytest.mark.parametrize("n", [2, 3])
def test_mde_with_two_or_three_pairs_by_simulation(n):
    """With one or two degrees of freedom the MDE is many sds, where scipy's noncentral t
    has no value in the far lower tail; the power must still be right."""
    effect = minimum_detectable_effect(1.0, n)
    assert math.isfinite(effect) and effect > 3.0
    rng = np.random.default_rng(1)
    samples = rng.normal(effect, 1.0, size=(200_000, n))
    t = samples.mean(1) / (samples.std(1, ddof=1) / math.sqrt(n))
    rejected = np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1))
    assert rejected == pytest.approx(0.8, abs=0.005)


def test_seeds_needed_inverts_the_mde():
    for n in (3, 5, 12, 40):
        mde = minimum_detectable_effect(1.3, n)
        assert seeds_needed(mde * 1.000001, 1.3) == n
        assert seeds_needed(mde * 0.98, 1.3) > n


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4 0.02, x3 0.03, x2 0.06, x1 0.04 -> running max
    adjusted = holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])


def test_verdict_texts():
    results = verdicts(
        [
            ("AGR", 2.0, 0.1, 5, 0.5, True),  # clearly higher, higher is better
            ("AGR", 2.0, 0.1, 5, 0.5, False),  # clearly higher, lower is better
            ("AGR", 0.01, 0.05, 5, 0.5, True),  # tight around 0
            ("AGR", 0.3, 1.0, 3, 0.5, True),  # noisy
            ("AGR", 0.0, 0.0, 3, 0.5, True),  # identical in every seed
            ("AGR", 0.3, math.nan, 1, 0.5, True),  # one pair
        ]
    )
    texts = [v.text for v in results]
    assert texts[:3] == ["AGR better", "AGR worse", "equivalent (±0.5)"]
    assert texts[3] == f"inconclusive (≈{seeds_needed(0.5, 1.0)} seeds needed)"
    assert texts[4] == "equivalent (±0.5)" and texts[5] == "inconclusive (1 pair)"
    # Holm over the five finite p-values: the first one is multiplied by 5
    raw = difference_p(2.0, 0.1, 5)
    assert results[0].p_difference == pytest.approx(min(1.0, 5 * raw))
