"""When a run reached its steps: a small table from step to the time it was made, so that a
page can draw line plots against wall time since each run's start (runs fine-tuned from a
checkpoint start late) although their points carry steps only.

:class:`StepClock` keeps at most about :data:`ROWS` rows whatever the run's length (every
k-th new step, k doubling as it fills, and always the newest). :class:`XMap` is a page's
frozen view of it, or of a shift: where a step is drawn, and back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["AT_STEP", "ROWS", "StepClock", "XMap"]

ROWS = 512  # rows a clock keeps, at most (and the newest step beside them)


class StepClock:
    """Steps as they first grew past every earlier one, and when: a step that goes back (a
    run resumed from a checkpoint) keeps the time it was first reached."""

    def __init__(self) -> None:
        self._kept: list[tuple[int, float]] = []  # every ``_stride``-th new step, in order
        self._newest: tuple[int, float] | None = None
        self._stride, self._count = 1, 0
        self.version = 0  # grows as kept rows change (a page redraws its mapping then)

    def take(self, step: int, time: float) -> None:
        """Take in that ``step`` was made at ``time`` (seconds since the epoch)."""
        if self._newest is not None and step <= self._newest[0]:
            return
        self._newest = (step, time)
        self._count += 1
        if self._count % self._stride:
            return
        self._kept.append((step, time))
        self.version += 1
        if len(self._kept) > ROWS:
            self._kept, self._stride = self._kept[::2], self._stride * 2

    def extend(self, pairs: Iterable[tuple[int, float]]) -> None:
        """Take in (step, time) pairs in the order they were made."""
        for step, time in pairs:
            self.take(step, time)

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """Steps (increasing) and their times: the kept rows and the newest."""
        rows = list(self._kept)
        if self._newest is not None and (not rows or rows[-1] != self._newest):
            rows.append(self._newest)
        steps = np.array([s for s, _ in rows], np.float64)
        return steps, np.array([t for _, t in rows], np.float64)


@dataclass(frozen=True)
class XMap:
    """Where a run's steps are drawn: by the lines through the nearest rows of a table
    (``steps`` to ``shown``; past its ends, at the pace of the two nearest; one row: there).
    No rows: where they are. ``along`` says what the drawn x is."""

    steps: tuple[float, ...] = ()
    shown: tuple[float, ...] = ()
    along: str = "step"

    @classmethod
    def shifted(cls, by: float) -> XMap:
        """Steps drawn as the steps since ``by`` (a run's first)."""
        return cls((0.0, 1.0), (-by, 1.0 - by), "steps since the run's first") if by else cls()

    @classmethod
    def by_time(cls, clock: StepClock, origin: float) -> XMap:
        """Steps drawn at the seconds since ``origin`` (a run's start) they were made."""
        steps, times = clock.table()
        if not len(steps):
            return cls()
        return cls(tuple(steps.tolist()), tuple((times - origin).tolist()), "seconds since start")

    @property
    def identity(self) -> bool:
        return not self.steps

    def at(self, step: float) -> float:
        """Where ``step`` is drawn."""
        return _between(step, self.steps, self.shown) if self.steps else step

    def step(self, shown: float) -> float:
        """The step drawn at ``shown``."""
        return _between(shown, self.shown, self.steps) if self.steps else shown


AT_STEP = XMap()  # steps drawn at the step


def _between(x: float, xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
    """``x`` mapped by the line through the nearest rows of ``xs`` to ``ys`` (one row: its y;
    rows of one x: the first's y)."""
    if len(xs) == 1:
        return ys[0]
    i = int(np.clip(np.searchsorted(xs, x, side="right") - 1, 0, len(xs) - 2))
    dx = xs[i + 1] - xs[i]
    return ys[i] + (x - xs[i]) * (ys[i + 1] - ys[i]) / dx if dx else ys[i]
