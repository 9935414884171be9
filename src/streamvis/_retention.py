"""Which frames of a run over its disk budget go: the largest plots' oldest replaces, evenly."""

from __future__ import annotations

import sqlite3

import numpy as np

__all__ = ["chosen", "shares", "thinned"]


def chosen(db: sqlite3.Connection, excess: int) -> list[int]:
    """The ids of the frames to delete from a run's database for about ``excess`` bytes."""
    sizes = {
        plot: (total, history)
        for plot, total, history in db.execute(
            "SELECT plot, sum(coalesce(size, length(frame))), "
            "sum(CASE WHEN replace AND NOT fig THEN coalesce(size, length(frame)) ELSE 0 END) "
            "FROM frames WHERE op = 'plot' GROUP BY plot"
        )
    }
    doomed: list[int] = []
    for plot, keep in shares(sizes, excess).items():
        query = "SELECT id FROM frames WHERE plot = ? AND replace AND NOT fig ORDER BY id"
        doomed += thinned([row[0] for row in db.execute(query, (plot,))], keep)
    return doomed


def shares(sizes: dict[str, tuple[int, int]], excess: int) -> dict[str, float]:
    """For each plot to thin, the fraction of its replace history to keep so that about
    ``excess`` bytes go. ``sizes`` holds each plot's (total, thinnable history) bytes. Every
    plot may keep up to one equal share of what stays (water-filling): a plot below it keeps
    everything, one above it gives up its history down to the share (or all of it, but its
    first and latest frames, if its appends alone exceed the share)."""
    total = sum(size for size, _ in sizes.values())
    remaining, share = max(total - excess, 0), 0.0
    order = sorted(sizes.items(), key=lambda item: item[1][0])
    for i, (_, (size, _)) in enumerate(order):  # smallest first: each keeps all it can
        share = remaining / (len(order) - i)
        if size > share:
            break
        remaining -= size
    else:
        return {}
    keep = {}
    for plot, (size, history) in order:
        if size > share and history > 0:
            fixed = size - history  # appends, first replaces, fig_kwargs: never thinned
            keep[plot] = min(1.0, max(share - fixed, 0.0) / history)
    return keep


def thinned(ids: list[int], keep: float) -> list[int]:
    """The ids to delete so that about ``keep`` of them stay, spread evenly over the span of
    ids (not over those left by earlier thinning), the first and the last always kept."""
    if len(ids) <= 2:
        return []
    count = max(2, round(len(ids) * keep))
    span = np.asarray(ids)
    grid = np.linspace(span[0], span[-1], count)
    right = np.clip(np.searchsorted(span, grid), 1, len(span) - 1)
    nearest = np.where(grid - span[right - 1] <= span[right] - grid, right - 1, right)
    kept = set(span[nearest].tolist())
    return [i for i in ids if i not in kept]
