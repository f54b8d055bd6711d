"""How the tables print numbers and what they say about chance: a nonzero value never prints
as 0, intervals share one style, and the t-intervals and chance sentences agree with
hand-computed values."""

from __future__ import annotations

import math

import pytest
from scipy.stats import t

from agr_suite.report.markdown import chance_note
from agr_suite.report.numbers import (
    format_difference,
    format_interval,
    format_mean_std,
    format_number,
)
from agr_suite.report.spec import Metric
from agr_suite.report.verdicts import Summary, summarize

T975_DF2 = 4.302652729911275  # t(0.975, df=2), from a t table


# --------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    "value, decimals, sign, expected",
    [
        (2.8e-6, 2, True, "+2.8e-06"),  # would print +0.00: two significant digits
        (-2.8e-6, 2, True, "−2.8e-06"),
        (0.12345, 2, True, "+0.12"),  # large enough: the spec's decimals
        (0.12345, 2, False, "0.12"),
        (0.0, 2, True, "0"),  # exactly zero
        (-0.0, 3, False, "0"),
        (-0.004, 2, False, "−0.0040"),  # rounds to 0.00: 2 significant digits
        (0.00012, 3, True, "+0.00012"),
        (9.96e-5, 2, False, "1.0e-04"),
        (-1.3908745144656601e-05, 3, True, "−1.4e-05"),
        (6.137171978402388, 3, False, "6.137"),
        (50.22222222222222, 2, False, "50.22"),
        (-1.5, 2, True, "−1.50"),
        (188.77343592203465, 2, False, "188.77"),
        (0.0021, 3, False, "0.002"),  # rounds to a nonzero value: the spec's decimals
        (math.nan, 2, False, "—"),
        (math.inf, 2, True, "—"),
    ],
)
def test_format_number(value, decimals, sign, expected):
    assert format_number(value, decimals, sign=sign) == expected


def test_a_nonzero_value_never_prints_as_zero():
    for exponent in range(-12, 4):
        for mantissa in (1.0, 2.5, 4.99, 5.0, 9.99):
            for decimals in (0, 1, 2, 3, 4):
                for value in (mantissa * 10.0**exponent, -mantissa * 10.0**exponent):
                    text = format_number(value, decimals, sign=True).replace("−", "-")
                    assert float(text) != 0, (value, decimals, text)
                    assert math.copysign(1, float(text)) == math.copysign(1, value)
                    assert float(text) == pytest.approx(value, rel=0.06, abs=0.5 * 10**-decimals)


@pytest.mark.parametrize(
    "mean, low, high, decimals, expected",
    [
        # Table 3's weight-decay-0 MLM loss difference: printed +0.000 [+0.000, +0.000] before.
        (1.7421054524291435e-05, 2.7504943348831396e-06, 3.209161471369973e-05, 3,
         "+1.7e-05 [+2.8e-06, +3.2e-05]"),
        (-1.3908745144656601e-05, -0.00014423065560886184, 0.00011641316531954864, 3,
         "−1.4e-05 [−0.00014, +0.00012]"),
        (2.3333333, -2.8378, 7.5045, 2, "+2.33 [−2.84, +7.50]"),
        # one end would round to 0: all three get 2 significant digits
        (0.0023786, -0.0068915, 0.0116488, 2, "+0.0024 [−0.0069, +0.012]"),
        (0.5, 0.0, 1.0, 2, "+0.50 [0, +1.00]"),
    ],
)  # fmt: skip
def test_format_interval(mean, low, high, decimals, expected):
    assert format_interval(mean, low, high, decimals) == expected


def test_format_difference_and_mean_std():
    zero = summarize([0.0, 0.0, 0.0], interval=True)
    assert format_difference(zero, [0.0, 0.0, 0.0], 2) == "0 (identical in all 3 seeds)"
    assert format_difference(Summary(1, 0.0, math.nan), [0.0], 2) == "0 (identical in the 1 seed)"
    assert format_difference(Summary(1, 0.25, math.nan), [0.25], 2) == "+0.25 (1)"
    assert format_difference(Summary(0, math.nan, math.nan), [], 2) == "—"
    # Nonzero differences with a zero mean are not "identical".
    mixed = summarize([1.0, -1.0], interval=True)
    assert format_difference(mixed, [1.0, -1.0], 2) == "0 [−12.71, +12.71] (2)"
    assert format_mean_std(Summary(3, 50.22222, 0.0), 2) == "50.22 ± 0"
    assert format_mean_std(Summary(3, 6.137, 2.1e-5), 3) == "6.137 ± 2.1e-05"
    assert format_mean_std(Summary(1, 41.0, math.nan), 2) == "41.00"
    assert format_mean_std(Summary(0, math.nan, math.nan), 2) == "—"


# --------------------------------------------------------------------------- intervals


@pytest.mark.parametrize(
    "differences, mean, half",
    [
        # mean 7/3, sd sqrt(13/3): half = t(0.975, 2) * sqrt(13/9); [-2.84, 7.50]
        ([3.0, 4.0, 0.0], 7 / 3, T975_DF2 * math.sqrt(13 / 9)),
        # mean 31/30, sd sqrt(0.07/3): half = t * sqrt(0.07/9) = 0.379; [0.65, 1.41]
        ([1.0, 1.2, 0.9], 31 / 30, T975_DF2 * math.sqrt(0.07 / 9)),
        # all below zero: mean -3, sd 1
        ([-2.0, -3.0, -4.0], -3.0, T975_DF2 / math.sqrt(3)),
        # two pairs: mean 1, sd sqrt(2), half = t(0.975, 1) * 1 = 12.706
        ([0.0, 2.0], 1.0, 12.706204736174706),
        # identical in every seed: the point interval [0, 0]
        ([0.0, 0.0, 0.0], 0.0, 0.0),
    ],
)
def test_t_intervals_against_hand_computed_ones(differences, mean, half):
    s = summarize(differences, interval=True)
    assert s.low == pytest.approx(mean - half) and s.high == pytest.approx(mean + half)
    n = len(differences)
    if s.std > 0:
        scipy_low, scipy_high = t.interval(0.95, n - 1, loc=s.mean, scale=s.std / math.sqrt(n))
        assert (s.low, s.high) == (pytest.approx(scipy_low), pytest.approx(scipy_high))
    one = summarize([1.0], interval=True)  # one pair: no interval
    assert math.isnan(one.low) and math.isnan(one.high)


def test_chance_note_against_hand_computed_intervals():
    metric = Metric("sop_acc", "SOP accuracy (%)", chance=50.0, chance_basis="balanced labels")
    # Table 3's committed SOP values: mean 50.222, sd 0.770 -> 50.22 -+ 1.91: contains 50.
    values = [50.666666666666664, 50.666666666666664, 49.333333333333336]
    s = summarize(values, interval=True)
    assert s.low == pytest.approx(50.2222222 - T975_DF2 * 0.7698003589 / math.sqrt(3))
    cells = [("wd 0 / AdamW", s, values, None), ("wd 0 / AGR", s, values, None)]
    note = chance_note(metric, cells)
    assert note == (
        "SOP accuracy (%): chance is 50% (balanced labels). Every cell's 95% t-interval over "
        "seeds contains chance; every cell mean is within ±0.22 pp of it, every run within "
        "±0.67 pp: no cell is distinguishable from chance at this scale."
    )
    # 60, 61, 62: 61 -+ 2.48, excludes 50; one seed: no interval.
    far = summarize([60.0, 61.0, 62.0], interval=True)
    one = summarize([50.0], interval=True)
    note = chance_note(metric, [("x", far, [60.0, 61.0, 62.0], None), ("y", one, [50.0], None)])
    assert (
        "1 of the 1 cells with a 95% t-interval over seeds exclude chance (x: 61.00 [58.52, 63.48])"
        in note
    )
    assert "Fewer than 2 seeds, no interval: y." in note
    assert chance_note(Metric("top1", "Top-1"), [("x", far, [60.0], None)]) is None


def test_chance_band_of_a_constant_predictor():
    """151 test pairs, 73 swapped: always predicting one order scores 73/151 or 78/151. A run
    that scores exactly that has learned nothing, even though 48.34 [48.34, 48.34] excludes
    50; a run outside the band is named."""
    metric = Metric("sop_acc", "SOP accuracy (%)", chance=50.0)
    band = (100 * 73 / 151, 100 * 78 / 151)
    stuck = [100 * 73 / 151] * 3
    s = summarize(stuck, interval=True)
    assert s.std == 0 and s.low == s.high == s.mean  # equal values: exactly 0, no float dust
    note = chance_note(metric, [("a", s, stuck, band), ("b", s, stuck, band)])
    assert "scores between 48.34% and 51.66% (always the least or always the most" in note
    assert "Every run of every cell lies within that band" in note
    learned = [48.0, 60.0, 70.0]
    note = chance_note(
        metric, [("a", s, stuck, band), ("b", summarize(learned, interval=True), learned, band)]
    )
    assert "1 of the 2 cells have runs outside that band (b: 59.33 ± 11.02)" in note
