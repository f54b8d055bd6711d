"""The README's claims about the mini tables follow the committed numbers: the section between
the mini-results markers is exactly what agr_suite/report/claims.py generates from results/mini/*.csv (a
stale README fails here), the number formatting never shows a nonzero value as 0, and the
'excludes zero' and chance sentences agree with hand-computed t-intervals."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from scipy.stats import t

from agr_suite.report.claims import (
    BEGIN,
    END,
    read_table_csv,
    replace_section,
    section,
    summary,
    table_sentences,
)
from agr_suite.report.spec import ROOT, Metric
from agr_suite.report.tables import (
    CSV_FIELDS,
    Summary,
    chance_note,
    excludes,
    format_difference,
    format_interval,
    format_mean_std,
    format_number,
    summarize,
)

MINI = ROOT / "results" / "mini"
T975_DF2 = 4.302652729911275  # t(0.975, df=2), from a t table


# --------------------------------------------------------------------------- the README


def test_the_readme_section_is_what_the_committed_csvs_give():
    text = (ROOT / "README.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    expected = summary(MINI)
    assert section(text) == expected, (
        "README.md's mini-results section is stale: run `.venv/bin/python "
        "scripts/readme_summary.py` (or `make tables SCALE=mini`)"
    )


def test_every_committed_table_is_in_the_readme_with_each_paired_cell():
    text = section((ROOT / "README.md").read_text())
    paths = sorted(MINI.glob("*.csv"))
    assert paths, "no committed mini tables"
    for path in paths:
        assert f"`results/mini/{path.name}`" in text
        table = read_table_csv(path)
        for cell in table.cells:
            if cell.diff_vs:
                assert f"| {cell.row} |" in text


def test_the_readme_summary_says_which_intervals_exclude_zero():
    """Recompute each committed interval from the per-seed differences with scipy and check
    the generated sentence of its table names exactly those that exclude zero."""
    text = section((ROOT / "README.md").read_text())
    for path in sorted(MINI.glob("*.csv")):
        with path.open(newline="") as handle:
            lines = [row for row in csv.DictReader(handle) if row["diff_vs"]]
        away = []
        for row in lines:
            diffs = [float(item.split(":")[1]) for item in row["diff_values"].split()]
            if len(diffs) < 2:
                continue
            mean = sum(diffs) / len(diffs)
            sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
            if sd == 0:
                low = high = mean
            else:
                low, high = t.interval(0.95, len(diffs) - 1, loc=mean, scale=sd / len(diffs) ** 0.5)
            assert float(row["diff_ci_low"]) == pytest.approx(low, rel=1e-9, abs=1e-15)
            assert float(row["diff_ci_high"]) == pytest.approx(high, rel=1e-9, abs=1e-15)
            if low > 0 or high < 0:
                away.append(row)
        block = text.split(f"`results/mini/{path.name}`")[1].split("**")[0]
        claim = next(line for line in block.splitlines() if "zero" in line)
        if away:
            assert claim.startswith(f"- {len(away)} of the {len(lines)} paired 95% intervals")
            assert all(f"{row['row']}, {row['column']} − {row['diff_vs']}" in claim for row in away)
        else:
            assert claim == f"- None of the {len(lines)} paired 95% intervals excludes zero."


def test_replace_section_keeps_the_rest_and_needs_both_markers():
    text = f"before\n{BEGIN}\nold\n{END}\nafter\n"
    new = replace_section(text, "new\n")
    assert new == f"before\n{BEGIN}\nnew\n{END}\nafter\n"
    assert section(new) == "new\n"
    with pytest.raises(ValueError, match="mini-results"):
        replace_section("no markers here", "x")
    with pytest.raises(ValueError):
        replace_section(f"{END}\n{BEGIN}\n", "x")


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
    "differences, mean, half, away",
    [
        # mean 7/3, sd sqrt(13/3): half = t(0.975, 2) * sqrt(13/9); [-2.84, 7.50]
        ([3.0, 4.0, 0.0], 7 / 3, T975_DF2 * math.sqrt(13 / 9), False),
        # mean 31/30, sd sqrt(0.07/3): half = t * sqrt(0.07/9) = 0.379; [0.65, 1.41]
        ([1.0, 1.2, 0.9], 31 / 30, T975_DF2 * math.sqrt(0.07 / 9), True),
        # all below zero: mean -3, sd 1
        ([-2.0, -3.0, -4.0], -3.0, T975_DF2 / math.sqrt(3), True),
        # two pairs: mean 1, sd sqrt(2), half = t(0.975, 1) * 1 = 12.706
        ([0.0, 2.0], 1.0, 12.706204736174706, False),
        # identical in every seed: the point interval [0, 0] does not exclude zero
        ([0.0, 0.0, 0.0], 0.0, 0.0, False),
    ],
)
def test_excludes_zero_against_hand_computed_t_intervals(differences, mean, half, away):
    s = summarize(differences, interval=True)
    assert s.low == pytest.approx(mean - half) and s.high == pytest.approx(mean + half)
    n = len(differences)
    if s.std > 0:
        scipy_low, scipy_high = t.interval(0.95, n - 1, loc=s.mean, scale=s.std / math.sqrt(n))
        assert (s.low, s.high) == (pytest.approx(scipy_low), pytest.approx(scipy_high))
    assert excludes(s.low, s.high) is away
    assert excludes(math.nan, math.nan) is False  # one pair: no interval, no claim


def _write_csv(path: Path, rows: list[dict]) -> None:
    """A table CSV in the format of the first committed tables (without the later columns)."""
    fields = CSV_FIELDS[: CSV_FIELDS.index("diff_values") + 1]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)


def _cell(row: str, column: str, values: list[float], base: list[float] | None = None) -> dict:
    s = summarize(values)
    line = {
        "table": "no_such_spec",
        "scale": "mini",
        "metric": "acc",
        "select": "final",
        "row": row,
        "column": column,
        "n": len(values),
        "mean": repr(s.mean),
        "std": repr(s.std),
        "values": " ".join(f"{i}:{v!r}" for i, v in enumerate(values)),
    }
    if base is not None:
        diffs = [v - b for v, b in zip(values, base)]
        d = summarize(diffs, interval=True)
        line.update(
            diff_vs="Base",
            diff_n=len(diffs),
            diff_mean=repr(d.mean),
            diff_ci_low=repr(d.low),
            diff_ci_high=repr(d.high),
            diff_values=" ".join(f"{i}:{v!r}" for i, v in enumerate(diffs)),
        )
    return line


def test_generated_sentences_from_a_hand_made_csv(tmp_path):
    base_a, agr_a = [50.0, 52.0, 57.0], [53.0, 56.0, 57.0]  # diffs 3, 4, 0: includes zero
    base_b, agr_b = [40.0, 41.0, 42.0], [41.0, 42.2, 42.9]  # diffs 1, 1.2, 0.9: excludes it
    base_c = [60.0, 61.0, 62.0]  # identical in every seed
    path = tmp_path / "no_such_spec.csv"
    _write_csv(
        path,
        [
            _cell("A", "Base", base_a),
            _cell("A", "AGR", agr_a, base_a),
            _cell("B", "Base", base_b),
            _cell("B", "AGR", agr_b, base_b),
            _cell("C", "Base", base_c),
            _cell("C", "AGR", base_c, base_c),
        ],
    )
    table = read_table_csv(path)
    metric = Metric("acc", "Accuracy (%)", chance=50.0, chance_basis="balanced labels")
    sentences = table_sentences(table, {"acc": metric})
    assert sentences[0] == (
        "1 of the 3 paired 95% intervals excludes zero, each taken on its own (the verdicts "
        "correct for the table's many comparisons): B, AGR − Base: "
        "+1.03 [+0.65, +1.41] (favours AGR)."
    )
    assert sentences[1] == "AGR equals Base exactly in every seed: C."
    assert sentences[2] == "Cell means: `acc` from 41.00 (B, Base) to 61.00 (C, Base)."
    # Chance 50%: A/Base [50, 52, 57] has mean 53 and a t-interval containing 50; the other
    # cells are far from it.
    assert sentences[3].startswith("Accuracy (%): chance is 50% (balanced labels). 5 of the 6 ")
    # B / AGR: 42.03 -+ 4.303 * 0.961 / sqrt(3)
    assert "A / Base" not in sentences[3] and "B / AGR: 42.03 [39.65, 44.42]" in sentences[3]

    markdown = "\n".join(summary(tmp_path).splitlines())
    assert "| B | 41.00 ± 1.00 (3) | 42.03 ± 0.96 (3) | +1.03 [+0.65, +1.41] (3) |" in markdown
    assert "| C | 61.00 ± 1.00 (3) | 61.00 ± 1.00 (3) | 0 (identical in all 3 seeds) |" in markdown
    assert "**no_such_spec** (`" in markdown


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


def test_the_verdict_tally_counts_kinds_and_names_the_decided_ones():
    from agr_suite.report.claims import CsvCell, verdict_tally

    def cell(column, verdict):
        return CsvCell("top1", "R", column, Summary(3, 1.0, 0.1), [], "Base", verdict=verdict)

    cells = [
        cell("A", "A worse"),
        cell("B", "B better, within ±0.5"),
        cell("C", "inconclusive (≈12 seeds needed)"),
        cell("D", "not informative (both arms constant across seeds)"),
        cell("E", "inconclusive (≈40 seeds needed)"),
    ]
    assert verdict_tally(cells, lambda c: c.row) == (
        "Verdicts: 1 worse, 1 better, 2 inconclusive, 1 not informative "
        "(R: A worse than Base; R: B better than Base, within ±0.5)."
    )
    assert verdict_tally([cell("A", "")], lambda c: c.row) is None
