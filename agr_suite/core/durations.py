"""A duration as the progress lines show it (a run's, the local pool's, a Slurm sweep's
remaining time)."""

from __future__ import annotations


def format_duration(seconds: float | None) -> str:
    """``?`` (unknown), ``45s``, ``12m``, ``1h04m``, ``2d03h``: to the second under a minute,
    to the minute under a day, then to the hour."""
    if seconds is None:
        return "?"
    if round(seconds) < 60:
        return f"{max(round(seconds), 0)}s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes}m"
    if minutes < 24 * 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    days, hours = divmod(round(seconds / 3600), 24)
    return f"{days}d{hours:02d}h"
