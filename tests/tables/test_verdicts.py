"""report/verdicts.py against independent references: scipy's own t-tests, a normal-approximation
power formula, a Monte Carlo power estimate, and Holm's procedure worked by hand."""

import math

import numpy as np
import pytest
from scipy import stats

from agr_suite.report.verdicts import (
    Comparison,
    difference_p,
    holm,
    minimum_detectable_effect,
    planning_level,
    power,
    seeds_needed,
    sign_flip_p,
    sign_flip_tost_p,
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


def comparison(differences, margin=0.5, higher=True, **kwargs):
    return Comparison("AGR", tuple(differences), margin, higher, **kwargs)


def test_verdict_texts():
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.1, 5)
    results = verdicts(
        [
            comparison(2.0 + noise),  # clearly higher, higher is better
            comparison(2.0 + noise, higher=False),  # clearly higher, lower is better
            comparison(0.01 + noise / 2),  # tight around 0
            comparison([0.3, 1.4, -0.8]),  # noisy
            comparison([0.3]),  # one pair
        ]
    )
    texts = [v.text for v in results]
    assert texts[:3] == ["AGR better", "AGR worse", "equivalent (±0.5)"]
    sd = float(np.std([0.3, 1.4, -0.8], ddof=1))
    assert texts[3] == f"inconclusive (≈{seeds_needed(0.5, sd, 0.05 / 5)} seeds needed)"
    assert texts[4] == "inconclusive (1 pair)"
    # Holm over the five comparisons of one family: the smallest p is multiplied by 5
    mean, sd, n = moments(2.0 + noise)
    assert results[0].p_difference == pytest.approx(min(1.0, 5 * difference_p(mean, sd, n)))
    assert {v.family_size for v in results} == {5}


def scipy_sign_flip(differences, alternative="two-sided"):
    """scipy's permutation test of a one-sample mean: with permutation_type='samples' and
    one sample it flips signs, enumerating all 2^n patterns (n <= 20 here)."""
    return stats.permutation_test(
        (np.asarray(differences, dtype=float),),
        np.mean,
        permutation_type="samples",
        alternative=alternative,
        n_resamples=np.inf,
    ).pvalue


@pytest.mark.parametrize(
    "differences",
    [[0.4, 1.1, -0.2, 0.9, 0.6], [0.278, 0.278], [1.0, 2.0, 3.0], [-0.5, 0.2, 0.1, -0.3]],
)
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_sign_flip_p_is_an_exact_enumeration(differences, alternative):
    assert sign_flip_p(differences, alternative) == pytest.approx(
        scipy_sign_flip(differences, alternative), rel=1e-12
    )


def test_sign_flip_p_by_hand():
    # [1, 2, 3]: the sums of the 8 sign patterns are ±6, ±4, ±2, ±0 (twice): |sum| >= 6 in 2
    assert sign_flip_p([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    assert sign_flip_p([0.0, 0.0, 0.0]) == 1.0
    # a constant difference: only the all-plus and all-minus patterns are as extreme
    assert sign_flip_p([0.278] * 10) == pytest.approx(2 / 1024)
    assert sign_flip_p([0.278] * 10) == pytest.approx(scipy_sign_flip([0.278] * 10))
    assert sign_flip_tost_p([0.0, 0.0, 0.0], 0.5) == pytest.approx(1 / 8)


def test_two_pairs_that_each_differ_by_one_digit_are_never_certain():
    """360 test digits: one digit is 0.278 pp. Two seeds each +1 digit used to give p = 0."""
    one_digit = 100 / 360
    (verdict,) = verdicts([comparison([one_digit, one_digit], resolution=one_digit)])
    assert verdict.method == "sign-flip (2^2)"
    assert verdict.p_difference == pytest.approx(0.5) and verdict.text.startswith("inconclusive")
    assert verdict.p_equivalence == pytest.approx(1 / 4)  # 2 pairs: one-sided p >= 1/4


def test_a_zero_sd_is_floored_at_the_resolution():
    """Five seeds each +1 digit: the t-test at sd = one digit (scipy's, on data with that
    sd), never p = 0."""
    one_digit = 100 / 360
    (verdict,) = verdicts([comparison([one_digit] * 5, resolution=one_digit)])
    assert verdict.method.startswith("t (sd ≥")
    t = one_digit / (one_digit / math.sqrt(5))
    assert verdict.p_difference == pytest.approx(2 * stats.t.sf(t, 4), rel=1e-12)
    assert 0 < verdict.p_difference < 1
    assert verdict.mde == pytest.approx(minimum_detectable_effect(one_digit, 5))
    # without a known resolution the same data go to the sign-flip test: p = 2/32
    (exact,) = verdicts([comparison([one_digit] * 5)])
    assert exact.method == "sign-flip (2^5)" and exact.p_difference == pytest.approx(2 / 32)


def test_not_informative_comparisons_are_not_tested_and_count_in_holm():
    data = [0.9, 1.1, 1.0, 1.2, 0.8]
    alone = verdicts([comparison(data)])[0]
    with_dead = verdicts(
        [comparison(data), comparison([0, 0, 0, 0, 0], not_informative="both arms constant")]
    )
    assert with_dead[1].text == "not informative (both arms constant)"
    assert math.isnan(with_dead[1].p_difference) and math.isnan(with_dead[1].mde)
    # the dead comparison still counts as one of two in the family: p doubles
    assert with_dead[0].p_difference == pytest.approx(2 * alone.p_difference)


def test_families_are_corrected_separately():
    data = [0.9, 1.1, 1.0, 1.2, 0.8]
    results = verdicts(
        [
            comparison(data, family="primary"),
            comparison(data, family="secondary"),
            comparison([0.1, -0.2, 0.05, 0.3, -0.1], family="secondary"),
        ]
    )
    raw = difference_p(*moments(data))
    assert results[0].p_difference == pytest.approx(raw)  # a family of one
    assert results[1].p_difference == pytest.approx(2 * raw)
    assert [v.family_size for v in results] == [1, 2, 2]


def test_better_within_the_margin():
    """A real difference whose whole 95% interval lies inside ±m says so."""
    data = [0.2, 0.22, 0.18, 0.21, 0.19, 0.2]
    (verdict,) = verdicts([comparison(data, margin=0.5)])
    low, high = stats.t.interval(0.95, 5, loc=np.mean(data), scale=stats.sem(data))
    assert -0.5 < low and high < 0.5
    assert verdict.text == "AGR better, within ±0.5"
    (outside,) = verdicts([comparison([x + 1 for x in data], margin=0.5)])
    assert outside.text == "AGR better"


def scipy_seeds(effect, sd, alpha):
    """The fewest pairs (at least 3) with 80% power of the two-sided paired t-test at level
    alpha, straight from scipy's noncentral t."""
    n = 3
    while True:
        df, shift, crit = n - 1, effect / (sd / math.sqrt(n)), stats.t.ppf(1 - alpha / 2, n - 1)
        if stats.nct.sf(crit, df, shift) + stats.nct.cdf(-crit, df, shift) >= 0.8:
            return n
        n += 1


@pytest.mark.parametrize(
    "margin, sd, family", [(0.05, 0.1, 12), (0.5, 1.5, 12), (0.5, 0.4, 8), (0.5, 0.6, 11)]
)
def test_the_plan_at_the_holm_level_against_scipy(margin, sd, family):
    """The issue's figures: at alpha/12 IS needs about 60 seeds and SOP about 128; at
    alpha/8 Table 2's top-1 about 12."""
    level = planning_level(family)
    assert level == pytest.approx(0.05 / family)
    assert seeds_needed(margin, sd, level) == scipy_seeds(margin, sd, level)
