"""When a run reached its steps: a small table from step to the time it was made, so that a
page can draw line plots against wall time since each run's start (runs fine-tuned from a
checkpoint start late) although their points carry steps only.

:class:`StepClock` keeps at most :data:`ROWS` rows and the newest, whatever the run's
length (rows at least k steps apart, k doubling as they fill). :class:`XMap` is a page's
frozen view of it, or of a shift: where a step is drawn, and back.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["AT_STEP", "ROWS", "StepClock", "XMap"]

ROWS = 512  # rows a clock keeps, at most (and the newest step beside them)


class StepClock:
    """Steps as they first grew past every earlier one, and when: a step that goes back (a
    run resumed from a checkpoint) keeps the time it was first reached. Kept rows are at
    least ``span`` steps apart, ``span`` doubling as they fill: spread by step, however
    they came (one by one, or sampled from the store at a restart)."""

    def __init__(self) -> None:
        self._kept: list[tuple[int, float]] = []
        self._newest: tuple[int, float] | None = None
        self._span = 1
        self.version = 0  # grows with every step taken (a page redraws its map, throttled)

    def take(self, step: int, time: float) -> None:
        """Take in that ``step`` was made at ``time`` (seconds since the epoch)."""
        if self._newest is not None and step <= self._newest[0]:
            return
        self._newest = (step, time)
        self.version += 1
        if self._kept and step < self._kept[-1][0] + self._span:
            return
        self._kept.append((step, time))
        while len(self._kept) > ROWS:
            self._span *= 2
            spaced = self._kept[:1]
            for row in self._kept[1:]:
                if row[0] >= spaced[-1][0] + self._span:
                    spaced.append(row)
            self._kept = spaced

    def extend(self, pairs: Iterable[tuple[int, float]]) -> None:
        """Take in (step, time) pairs in the order they were made."""
        for step, time in pairs:
            self.take(step, time)

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """Steps (increasing) and their times, never decreasing (a clock set back is held
        at its last time): the kept rows and the newest."""
        rows = list(self._kept)
        if self._newest is not None and (not rows or rows[-1] != self._newest):
            rows.append(self._newest)
        steps = np.array([s for s, _ in rows], np.float64)
        return steps, np.maximum.accumulate(np.array([t for _, t in rows], np.float64))


@dataclass(frozen=True)
class XMap:
    """Where a run's steps are drawn: by the lines through the nearest rows of a table
    (``steps`` to ``shown``, both increasing; past its ends, at the pace of the two nearest;
    one row: there). No rows: where they are. ``along`` says what the drawn x is."""

    steps: tuple[float, ...] = ()
    shown: tuple[float, ...] = ()
    along: str = "step"

    @classmethod
    def shifted(cls, by: float) -> XMap:
        """Steps drawn as the steps since ``by`` (a run's first)."""
        along = "steps since the run's first"
        return cls((0.0, 1.0), (-by, 1.0 - by), along) if by else cls((), (), along)

    @classmethod
    def by_time(cls, clock: StepClock, origin: float) -> XMap:
        """Steps drawn at the seconds since ``origin`` (a run's start) they were made."""
        steps, times = clock.table()
        along = "seconds since start"
        if not len(steps):
            return cls((), (), along)
        return cls(tuple(steps.tolist()), tuple((times - origin).tolist()), along)

    @property
    def identity(self) -> bool:
        return not self.steps

    def at(self, step: float) -> float:
        """Where ``step`` is drawn."""
        return _between(step, self.steps, self.shown) if self.steps else step

    def step(self, shown: float) -> float:
        """The step drawn at ``shown`` (past the last row, at least its step: a pause at
        the end maps no later x back before it)."""
        if not self.steps:
            return shown
        step = _between(shown, self.shown, self.steps)
        return max(step, self.steps[-1]) if shown >= self.shown[-1] else step


AT_STEP = XMap()  # steps drawn at the step


def _between(x: float, xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
    """``x`` mapped by the line through the nearest rows of ``xs`` (increasing) to ``ys``
    (one row: its y; two rows of one x: the first's y)."""
    if len(xs) == 1:
        return ys[0]
    i = min(max(bisect.bisect_right(xs, x) - 1, 0), len(xs) - 2)
    dx = xs[i + 1] - xs[i]
    return ys[i] + (x - xs[i]) * (ys[i + 1] - ys[i]) / dx if dx else ys[i]
