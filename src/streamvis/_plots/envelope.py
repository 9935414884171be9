"""Bounded views of long line plots: each line's least and greatest value per bucket of rows.

A tandem_lines plot grows by a row per call; after a million calls no page can redraw every
point on each update. Drawing, for each bucket of consecutive rows, the bucket's extremes in
the order they occurred covers the same vertical span at every pixel as drawing every row,
so a view of a few thousand rows looks like the whole. An :class:`Envelope` keeps those
buckets up to date as rows arrive, doubling their size to keep their number bounded, so a
view costs the same at any length; a zoomed-in window is summarized afresh at finer detail.
Pure numpy, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .columns import Columns

__all__ = [
    "BUCKETS",
    "DETAIL_ROWS",
    "SUMMARY_ROWS",
    "TAIL_ROWS",
    "Buckets",
    "Envelope",
    "buckets_of",
    "columns_of",
    "concat",
    "detail",
    "join",
    "merge_pairs",
    "summarize",
    "to_columns",
]

BUCKETS = 512  # an envelope keeps from BUCKETS to 2 * BUCKETS buckets
DETAIL_ROWS = 4 * BUCKETS  # at most this many rows are shown as they are
TAIL_ROWS = 64  # rows not yet in a whole bucket: shown as they are up to this many
SUMMARY_ROWS = 256  # stored rows are summed up in buckets of this many, for a restart


@dataclass(frozen=True)
class Buckets:
    """Consecutive row ranges: x at both ends, and each line's extremes with their rows."""

    start: np.ndarray  # (n,) int64: first row of each bucket
    x_first: np.ndarray  # (n,) x of the first and last row
    x_last: np.ndarray
    lo: dict[str, np.ndarray]  # line -> (n,) least value (NaN only if all are NaN)
    hi: dict[str, np.ndarray]
    at_lo: dict[str, np.ndarray]  # line -> (n,) int64 row of that value
    at_hi: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.start)

    def __getitem__(self, part: slice) -> Buckets:
        return Buckets(
            self.start[part],
            self.x_first[part],
            self.x_last[part],
            *({k: v[part] for k, v in d.items()} for d in self._lines()),
        )

    def _lines(self) -> tuple[dict[str, np.ndarray], ...]:
        return self.lo, self.hi, self.at_lo, self.at_hi


def summarize(columns: Columns, first_row: int, size: int, whole: bool = True) -> Buckets:
    """Buckets of ``size`` rows over ``columns`` (x, then one column per line), whose first
    row is row ``first_row`` of the plot. Only whole buckets unless ``whole`` is False."""
    rows = len(columns["x"])
    count = rows // size if whole else -(-rows // size)
    used = min(count * size, rows)
    starts = np.arange(count, dtype=np.int64) * size
    ends = np.minimum(starts + size, used) - 1
    x = columns["x"]
    lines = [k for k in columns if k != "x"]
    lo, hi, at_lo, at_hi = {}, {}, {}, {}
    for k in lines:
        values = columns[k][:used]
        pad = count * size - used  # the last, partial bucket: repeat its last value
        if pad:
            values = np.concatenate([values, np.repeat(values[-1:], pad)])
        grid = values.reshape(count, size)
        lo[k], hi[k] = np.fmin.reduce(grid, axis=1), np.fmax.reduce(grid, axis=1)
        # The first row holding each extreme (0 where a bucket is all NaN).
        at_lo[k] = starts + first_row + np.argmax(grid == lo[k][:, None], axis=1)
        at_hi[k] = starts + first_row + np.argmax(grid == hi[k][:, None], axis=1)
    return Buckets(starts + first_row, x[starts], x[ends], lo, hi, at_lo, at_hi)


def merge_pairs(b: Buckets) -> Buckets:
    """Each pair of neighbouring buckets as one; an odd last bucket stays as it is."""
    n = len(b) // 2 * 2
    a, z = slice(0, n, 2), slice(1, n, 2)
    lo, hi, at_lo, at_hi = {}, {}, {}, {}
    for k in b.lo:
        first_lo = (b.lo[k][a] <= b.lo[k][z]) | np.isnan(b.lo[k][z])
        first_hi = (b.hi[k][a] >= b.hi[k][z]) | np.isnan(b.hi[k][z])
        lo[k] = np.where(first_lo, b.lo[k][a], b.lo[k][z])
        hi[k] = np.where(first_hi, b.hi[k][a], b.hi[k][z])
        at_lo[k] = np.where(first_lo, b.at_lo[k][a], b.at_lo[k][z])
        at_hi[k] = np.where(first_hi, b.at_hi[k][a], b.at_hi[k][z])
    merged = Buckets(b.start[a], b.x_first[a], b.x_last[z], lo, hi, at_lo, at_hi)
    return concat(merged, b[n:]) if n < len(b) else merged


def concat(*parts: Buckets) -> Buckets:
    """Buckets one after another."""
    first = parts[0]
    return Buckets(
        np.concatenate([p.start for p in parts]),
        np.concatenate([p.x_first for p in parts]),
        np.concatenate([p.x_last for p in parts]),
        *(
            {k: np.concatenate([getattr(p, name)[k] for p in parts]) for k in first.lo}
            for name in ("lo", "hi", "at_lo", "at_hi")
        ),
    )


def columns_of(b: Buckets, monotonic: bool) -> Columns:
    """Buckets as named columns, to store (with whether x never decreased within them)."""
    columns: Columns = {"start": b.start, "x_first": b.x_first, "x_last": b.x_last}
    for name in ("lo", "hi", "at_lo", "at_hi"):
        columns.update({f"{name}:{k}": v for k, v in getattr(b, name).items()})
    columns["monotonic"] = np.array([monotonic], np.uint8)
    return columns


def buckets_of(columns: Mapping[str, np.ndarray]) -> tuple[Buckets, bool]:
    """Buckets (and whether x never decreased within them) from :func:`columns_of`."""
    lines: dict[str, dict[str, np.ndarray]] = {"lo": {}, "hi": {}, "at_lo": {}, "at_hi": {}}
    for key, values in columns.items():
        name, _, line = key.partition(":")
        if line:
            lines[name][line] = values
    b = Buckets(columns["start"], columns["x_first"], columns["x_last"], *lines.values())
    return b, bool(columns["monotonic"][0])


def to_columns(b: Buckets) -> Columns:
    """Two rows per bucket: each line's extremes in the order they occurred, drawn at the
    bucket's first and last x."""
    columns: Columns = {"x": np.stack([b.x_first, b.x_last], axis=1).reshape(-1)}
    for k in b.lo:
        low_first = (b.at_lo[k] <= b.at_hi[k])[:, None]
        pairs = np.stack([b.lo[k], b.hi[k]], axis=1)
        columns[k] = np.where(low_first, pairs, pairs[:, ::-1]).reshape(-1)
    return columns


def join(*parts: Columns) -> Columns:
    """Columns one after another (parts without rows are skipped)."""
    kept = [p for p in parts if len(next(iter(p.values()), ()))] or list(parts[:1])
    if len(kept) == 1:
        return kept[0]
    return {k: np.concatenate([p[k] for p in kept]) for k in kept[0]}


def detail(columns: Columns, first_row: int, limit: int = DETAIL_ROWS) -> Columns:
    """Rows as they are if there are at most ``limit``, else summarized to about that many."""
    rows = len(columns["x"])
    if rows <= limit:
        return columns
    return to_columns(summarize(columns, first_row, -(-rows // (limit // 2)), whole=False))


class Envelope:
    """The buckets of a growing plot, kept bounded: ``extend`` with the rows not yet summed up."""

    def __init__(self, columns: Columns) -> None:
        empty = {k: v[:0] for k, v in columns.items()}
        self.buckets = summarize(empty, 0, 1)
        self.size = 1
        self.rows = 0  # rows summed up in buckets; later rows are shown as they are
        self.monotonic = True  # x never decreases, so a window of x is a range of rows
        self._last_x = -np.inf

    @classmethod
    def of_buckets(
        cls, columns: Columns, buckets: Buckets, size: int, rows: int, monotonic: bool
    ) -> Envelope:
        """The envelope of ``rows`` rows already summed up in ``buckets`` of ``size`` rows
        (consecutive, from row 0), merged to keep their number bounded; ``columns`` (none of
        its rows) names the plot's columns."""
        envelope = cls(columns)
        envelope.monotonic = monotonic and bool(np.all(buckets.x_first[1:] >= buckets.x_last[:-1]))
        while len(buckets) > 2 * BUCKETS:
            buckets, size = merge_pairs(buckets), 2 * size
        envelope.buckets, envelope.size, envelope.rows = buckets, size, rows
        envelope._last_x = float(buckets.x_last[-1]) if len(buckets) else -np.inf
        return envelope

    def extend(self, columns: Columns) -> None:
        """Sum up whole buckets of ``columns``, which must be the rows from ``self.rows`` on."""
        x = columns["x"]
        if len(x):
            self.monotonic = (
                self.monotonic and x[0] >= self._last_x and bool(np.all(x[1:] >= x[:-1]))
            )
        # Grow the buckets first: a first summary of many rows must not make one per row.
        while len(self.buckets) + len(x) // self.size > 2 * BUCKETS:
            if len(self.buckets) > 1:
                self.buckets = merge_pairs(self.buckets)
            self.size *= 2
        new = summarize(columns, self.rows, self.size)
        if not len(new):
            return
        self.buckets = concat(self.buckets, new)
        self.rows = int(new.start[-1]) + self.size
        self._last_x = float(new.x_last[-1])

    def window(self, start: float, end: float, rows: int) -> tuple[int, int] | None:
        """The rows an x window from ``start`` to ``end`` shows (with a bucket more on each
        side, so lines run on past its edges), or None if the whole view shows them as finely
        (or x is not ordered, so no range of rows is the window)."""
        found = self.rows_between(start, end, rows)
        if found is None:
            return None
        begin, stop = found
        if (begin == 0 and stop == rows) or 2 * (stop - begin) // (DETAIL_ROWS // 2) >= self.size:
            return None  # all rows, or so many that in detail they would be hardly finer
        return begin, stop

    def rows_between(self, start: float, end: float, rows: int) -> tuple[int, int] | None:
        """The rows (of ``rows``) that hold every x from ``start`` to ``end``, and a bucket
        more on each side; None if x is not ordered (any row may)."""
        b = self.buckets
        if not self.monotonic or not len(b):
            return None
        start, end = min(start, end), max(start, end)  # an x axis may be reversed
        first = max(int(np.searchsorted(b.x_last, start, "left")) - 1, 0)
        last = int(np.searchsorted(b.x_first, end, "right")) + 1
        return int(b.start[first]), int(b.start[last]) if last < len(b) else rows

    def view(
        self, tail: Columns, window: tuple[int, int] | None = None, inner: Columns | None = None
    ) -> Columns:
        """Columns for a page: the buckets, then ``tail`` (the rows from ``self.rows`` on);
        with a ``window`` of rows, ``inner`` (those rows) replaces its buckets at finer detail."""
        tail = detail(tail, self.rows, TAIL_ROWS)
        if window is None or inner is None:
            return join(to_columns(self.buckets), tail)
        b = self.buckets
        before = int(np.searchsorted(b.start, window[0], "left"))
        after = int(np.searchsorted(b.start, window[1], "left"))
        parts = [to_columns(b[:before]), detail(inner, window[0])]
        if window[1] < self.rows:
            parts += [to_columns(b[after:]), tail]
        return join(*parts)
