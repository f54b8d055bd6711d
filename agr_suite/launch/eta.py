"""The remaining wall time of a batch of runs, from the runs of it that have finished (the
local pool's and the Slurm sweep watcher's progress lines: ``eta 1h04m``).

The estimate, :func:`remaining_seconds`:

1. A rate, in seconds per unit of cost: the total duration of the finished runs over their
   total cost (each run's cost is 1 when the runs have none, so the rate is then their mean
   duration). Only runs that finished are measured; a failed run (which may have failed in
   its first second, or diverged after hours) says nothing about the others.
2. Each run in progress takes ``rate x its cost`` in all, so it needs that less the time it
   has run already, or nothing once it has run longer than that.
3. The runs not started yet, in the order they will start, each take ``rate x its cost`` in
   the first slot to come free (that is how the pool and, about, a Slurm array start them).
   The estimate is when the last slot comes free.

So the tail is counted (one long run left on four slots takes its own time, not a quarter
of it), and with costs a batch ordered longest first (``start_runs.longest_first``) is
estimated run by run. With counts alone every run is taken to be the mean of those finished
so far: in a batch ordered longest first the long runs finish first, so the estimate starts
high and comes down as the short ones finish. No finished run, no estimate (None): never a
number made up before anything was measured.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

__all__ = ["remaining_seconds"]


def remaining_seconds(
    finished: Sequence[tuple[float, float]],
    running: Sequence[tuple[float, float]],
    waiting: Sequence[float],
    slots: int,
) -> float | None:
    """Seconds until the last run ends (module docstring), or None while it cannot be known.

    ``finished``: (duration in seconds, cost) of each finished run that was timed;
    ``running``: (seconds it has run, cost) of each run in progress, each in a slot of its
    own; ``waiting``: the cost of each run not started, in the order they start; ``slots``:
    how many runs go at once (at least the running ones). None when no finished run has a
    cost above 0, or when runs wait and there is no slot to run them in."""
    total_cost = sum(cost for _, cost in finished)
    if total_cost <= 0 or (waiting and max(slots, len(running)) < 1):
        return None
    rate = sum(duration for duration, _ in finished) / total_cost
    lanes = [max(rate * cost - elapsed, 0.0) for elapsed, cost in running]
    lanes += [0.0] * max(slots - len(running), 0)
    heapq.heapify(lanes)
    for cost in waiting:
        heapq.heappush(lanes, heapq.heappop(lanes) + rate * cost)
    return max(lanes, default=0.0)
