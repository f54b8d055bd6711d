"""The remaining-time estimate of the local pool and the Slurm watcher (launch/eta.py), each
expectation worked out by hand: slot by slot, which run ends when."""

from __future__ import annotations

import pytest

from agr_suite.core.durations import format_duration
from agr_suite.launch.eta import remaining_seconds


def test_no_estimate_before_a_run_has_finished():
    assert remaining_seconds([], [(300.0, 1.0)], [1.0, 1.0], 2) is None
    assert remaining_seconds([(600.0, 0.0)], [], [1.0], 2) is None  # no cost measured
    # runs wait and nothing can run them
    assert remaining_seconds([(600.0, 1.0)], [], [1.0], 0) is None


def test_counts_fill_the_first_free_slot_run_by_run():
    # finished runs took 600 s and 1200 s: 900 s a run. On 2 slots: slot A has a run 300 s
    # in (600 s left), then the 2nd waiting run (600 + 900 = 1500); slot B takes the 1st
    # (0 -> 900) and the 3rd (900 -> 1800). Not (600 + 3 x 900) / 2 = 1650: the tail counts.
    finished = [(600.0, 1.0), (1200.0, 1.0)]
    assert remaining_seconds(finished, [(300.0, 1.0)], [1.0, 1.0, 1.0], 2) == 1800.0


def test_the_last_run_takes_its_own_time_however_many_slots_are_free():
    assert remaining_seconds([(1500.0, 1.0)], [(500.0, 1.0)], [], 4) == 1000.0
    # a run past the mean is taken to end now; nothing left at all: 0
    assert remaining_seconds([(1500.0, 1.0)], [(2000.0, 1.0)], [], 4) == 0.0
    assert remaining_seconds([(1500.0, 1.0)], [], [], 4) == 0.0


def test_costs_weight_each_run_and_the_order_they_start_in_counts():
    # 3600 s for cost 2: 1800 s per unit. The running run (cost 1, 900 s in) has 900 s left.
    finished, running = [(3600.0, 2.0)], [(900.0, 1.0)]
    # longest first: the cost-4 run takes the free slot (0 -> 7200), the cost-1 run follows
    # the running one (900 -> 2700)
    assert remaining_seconds(finished, running, [4.0, 1.0], 2) == 7200.0
    # shortest first: the cost-1 run takes the free slot (0 -> 1800), the cost-4 run the slot
    # the running one frees at 900 (900 -> 8100)
    assert remaining_seconds(finished, running, [1.0, 4.0], 2) == 8100.0


def test_more_runs_in_progress_than_slots_keep_their_own_slots():
    # 3 running on a limit of 2 (e.g. two arrays): the waiting run follows the first to end
    finished = [(100.0, 1.0)]
    running = [(90.0, 1.0), (50.0, 1.0), (20.0, 1.0)]  # 10, 50, 80 s left
    assert remaining_seconds(finished, running, [1.0], 2) == 110.0


@pytest.mark.parametrize(
    "seconds,shown",
    [
        (None, "?"),
        (-5.0, "0s"),
        (0.0, "0s"),
        (44.6, "45s"),
        (59.4, "59s"),
        (59.6, "1m"),
        (754.0, "13m"),
        (3599.0, "1h00m"),
        (3840.0, "1h04m"),
        (23 * 3600 + 59 * 60, "23h59m"),
        (86399.0, "1d00h"),
        (2 * 86400 + 3 * 3600 + 100, "2d03h"),
    ],
)
def test_durations_read_to_the_second_minute_or_hour(seconds, shown):
    assert format_duration(seconds) == shown
