"""A line plot's lines smoothed as TensorBoard smooths them: a debiased exponential moving
average, over every row at full resolution, so what a page shows does not change with its
zoom or with how the raw lines are summarized.

For each line, ``last = w * last + (1 - w) * y`` over its finite values in order, shown as
``last / (1 - w ** count)`` (count: the finite values so far), which starts the average at
the first value instead of at 0. A non-finite value is shown as it is and skipped. A line
whose values are all equal is left as it is (TensorBoard's rule). Rows are fed in order, so
new rows cost only themselves; a line keeps at most ``2 * KEPT`` of its smoothed rows, every
``stride``-th (doubling as they grow) and the newest. Numpy; rows that left memory are read
through the plot's pieces, on the thread that runs the work handed out.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from .columns import Columns
from .growing import GrowingColumns

__all__ = ["KEPT", "ON_LOOP_ROWS", "Ema", "Smoothed", "Smoothings", "ema", "smoothings_of"]

log = logging.getLogger("streamvis.page")

KEPT = 2048  # a smoothed line keeps from KEPT to 2 * KEPT rows (all of them, up to that)
ON_LOOP_ROWS = 4096  # new rows held in memory, up to this many, are smoothed on the loop
_WEIGHTS = 4  # smoothings kept per plot (pages with other weights start theirs afresh)
_PARTS = 64  # kept parts, at most, before they are joined


@dataclass
class Ema:
    """The running average of each line, as far as it has been fed."""

    weight: float
    last: np.ndarray | None = None  # (lines,) float64
    count: np.ndarray | None = None  # (lines,) int64: finite values so far
    first: np.ndarray | None = None  # (lines,) each line's first value...
    constant: np.ndarray | None = None  # ...and whether every value since equals it

    def __call__(self, ys: np.ndarray) -> np.ndarray:
        """The smoothed ``ys`` (rows, lines), continuing from the rows fed before."""
        ys = np.asarray(ys, dtype=np.float64)
        lines = ys.shape[1]
        if self.last is None or self.count is None:
            self.last, self.count = np.zeros(lines), np.zeros(lines, np.int64)
        if self.first is None or self.constant is None:
            self.first, self.constant = ys[0].copy(), np.ones(lines, bool)
        self.constant &= (ys == self.first).all(axis=0)
        out = np.empty_like(ys)
        finite = np.isfinite(ys)
        whole = finite.all(axis=0)
        if whole.any():  # the usual case: lines without NaN or inf, all at once
            out[:, whole], self.last[whole], self.count[whole] = ema(
                ys[:, whole], self.weight, self.last[whole], self.count[whole]
            )
        for k in np.flatnonzero(~whole):  # non-finite values are shown as they are, skipped
            kept = finite[:, k]
            out[:, k] = ys[:, k]
            smoothed, last, count = ema(ys[kept, k : k + 1], self.weight, self.last[k : k + 1],
                                        self.count[k : k + 1])  # fmt: skip
            out[kept, k], self.last[k], self.count[k] = smoothed[:, 0], last[0], count[0]
        out[:, self.constant] = ys[:, self.constant]  # an unchanging line stays as it is
        return out


def ema(
    ys: np.ndarray, weight: float, last: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Debiased EMA of finite ``ys`` (rows, lines) after ``count`` values averaging ``last``
    (undebiased); the smoothed rows, and the new last and count. Vectorized in blocks short
    enough that ``weight ** -block`` stays far from overflow (``0 <= weight < 1``)."""
    rows = ys.shape[0]
    if rows == 0:
        return ys.copy(), last.copy(), count.copy()
    counts = count + np.arange(1, rows + 1)[:, None]
    if weight <= 0.0:
        return ys.copy(), ys[-1].copy(), counts[-1]
    out, last = np.empty_like(ys), last.astype(np.float64)
    block = max(1, min(rows, int(300 / -math.log(weight))))
    for start in range(0, rows, block):
        part = ys[start : start + block]
        grow = weight ** -np.arange(1, len(part) + 1, dtype=np.float64)[:, None]  # w^-(i+1)
        sums = np.cumsum(part * grow, axis=0) * (1 - weight)
        out[start : start + len(part)] = (last + sums) / grow  # w^(i+1) * last + ...
        last = out[start + len(part) - 1].copy()
    return out / (1 - weight ** counts.astype(np.float64)), last, counts[-1]


@dataclass(eq=False)
class Smoothed:
    """A line plot's lines smoothed with one weight, fed its rows in order: every
    ``stride``-th row kept (at most ``2 * KEPT``), and the newest."""

    weight: float
    rows: int = 0  # rows fed so far
    stride: int = 1
    busy: bool = False  # rows are being fed off the loop: read nothing meanwhile...
    waiting: list[Callable[[], None]] = field(default_factory=list)  # ...told when done
    failed: bool = False  # rows could not be read: no more are fed
    _ema: Ema = field(init=False)
    _kept: list[tuple[np.ndarray, Columns]] = field(default_factory=list)  # row numbers, rows
    _newest: Columns | None = None

    def __post_init__(self) -> None:
        self._ema = Ema(self.weight)

    def feed(self, pieces: Iterable[Columns]) -> None:
        """Smooth the next rows, as consecutive pieces of tandem columns."""
        for columns in pieces:
            n = len(columns["x"])
            if not n:
                continue
            names = [k for k in columns if k != "x"]
            smoothed = self._ema(np.stack([columns[k] for k in names], axis=1))
            rows = np.arange(self.rows, self.rows + n)
            keep = rows % self.stride == 0
            shown = smoothed.astype(np.float32)  # as pages get raw values
            part = {"x": np.asarray(columns["x"])[keep]}
            part.update((k, shown[keep, i]) for i, k in enumerate(names))
            self._kept.append((rows[keep], part))
            self._newest = {"x": columns["x"][-1:]}
            self._newest.update((k, shown[-1:, i]) for i, k in enumerate(names))
            self.rows += n
            while sum(len(r) for r, _ in self._kept) > 2 * KEPT:
                self._thin()
            if len(self._kept) > _PARTS:  # one part per few rows, live: join them now and then
                self._kept = [_joined(self._kept)]

    def _thin(self) -> None:
        """Keep every other kept row: the stride doubles."""
        self.stride *= 2
        thinned = []
        for rows, part in self._kept:
            keep = rows % self.stride == 0
            thinned.append((rows[keep], {k: v[keep] for k, v in part.items()}))
        self._kept = thinned

    def columns(self) -> Columns:
        """The smoothed rows kept, and the newest, as tandem columns."""
        if not self._kept or self._newest is None:
            return {}
        rows, part = self._kept[0] if len(self._kept) == 1 else _joined(self._kept)
        if len(rows) and rows[-1] == self.rows - 1:
            return part
        return {k: np.concatenate([v, self._newest[k]]) for k, v in part.items()}


def _joined(kept: list[tuple[np.ndarray, Columns]]) -> tuple[np.ndarray, Columns]:
    """Kept parts as one."""
    rows = np.concatenate([r for r, _ in kept])
    return rows, {k: np.concatenate([part[k] for _, part in kept]) for k in kept[0][1]}


class Smoothings:
    """A plot's smoothings, one per weight that pages show (the last few)."""

    def __init__(self) -> None:
        self._by_weight: dict[float, Smoothed] = {}
        self._lock = threading.Lock()  # a smoothing's busy and waiting, loop and thread

    def at(
        self, weight: float, data: GrowingColumns, done: Callable[[], None]
    ) -> tuple[Smoothed, Callable[[], None] | None]:
        """The smoothing with ``weight`` of ``data`` (call on the loop), fed on the loop
        with the rows it lacks if they are few and held in memory; else also the work that
        feeds them, to run off the loop (its rows settled now). ``done`` is called, on the
        thread that ran it, once work under way (handed out now or before) has ended."""
        smoothed = self._by_weight.pop(weight, None) or Smoothed(weight)
        self._by_weight[weight] = smoothed  # the most recent last
        idle = [w for w, s in self._by_weight.items() if not s.busy and s is not smoothed]
        for old in idle[: max(len(self._by_weight) - _WEIGHTS, 0)]:
            del self._by_weight[old]
        with self._lock:
            if smoothed.busy:
                smoothed.waiting.append(done)
                return smoothed, None
        start, stop = smoothed.rows, len(data)
        if smoothed.failed or start >= stop:
            return smoothed, None
        pieces = data.pieces(start, stop)
        if stop - start <= ON_LOOP_ROWS and data.held(start, stop):
            smoothed.feed(pieces)
            return smoothed, None
        smoothed.busy, smoothed.waiting = True, [done]

        def work() -> None:
            try:
                if self._by_weight.get(weight) is smoothed:  # else no page shows it now
                    smoothed.feed(pieces)
            except Exception:  # the rows could not be read: what was smoothed stays shown
                log.exception("smoothing rows %d to %d failed", start, stop)
                smoothed.failed = True
            finally:
                with self._lock:
                    smoothed.busy, waiting, smoothed.waiting = False, smoothed.waiting, []
                for callback in waiting:
                    callback()

        return smoothed, work


_OF: weakref.WeakKeyDictionary[object, Smoothings] = weakref.WeakKeyDictionary()


def smoothings_of(plot: object) -> Smoothings:
    """``plot``'s smoothings (call on the loop): made when a page first asks, so plots no
    page smooths, and the frames that make them, pay nothing; gone with the plot."""
    found = _OF.get(plot)
    if found is None:
        found = _OF[plot] = Smoothings()
    return found
