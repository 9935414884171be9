"""One plot's shown state: its spec, its rows (in pieces that may leave memory once stored),
and what pages derive from them (bounds, a long line plot's envelope, detail windows, the
last image). No I/O: rows that left memory are read back through the loaders they left.

Browser sessions never hold state of their own: they follow a ``PlotState`` through its
``version`` (figure configuration), ``generation`` (bumped by each replace) and row count, so
a page opened at any time shows everything received, and later updates arrive as slices.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ._errors import StoreError
from ._plots.columns import (
    Columns,
    Extent,
    LineEnds,
    color_levels,
    plot_columns,
)
from ._plots.envelope import (
    BUCKETS,
    DETAIL_ROWS,
    SUMMARY_ROWS,
    Envelope,
    buckets_of,
    concat,
    detail,
    join,
)
from ._plots.growing import GrowingColumns, Piece
from ._plots.raster import (
    RASTER_POINTS,
    RASTER_SEGMENTS,
    Bounds,
    Box,
    Viewport,
    bounds_of,
    box_of_columns,
    merged,
)
from ._protocol import Frame
from ._specs import (
    PlotSpec,
    data_shape,
    normalize,
)

__all__ = ["MARKS", "PlotState", "StoredRows", "at_step", "chunk_mark", "replaced"]

log = logging.getLogger("streamvis.server")

MARKS = 1000  # non-finite values marked on a line plot, at most (the first ones)
_WINDOWS = 4  # windows of a long line plot kept in detail (a few pages' zooms)

# The plot kinds pages show as an image once they have this many rows (points, segments).
_RASTER_LIMITS = {"scatter": RASTER_POINTS, "multi_lines": RASTER_SEGMENTS}


class StoredRows(Protocol):
    """Rows of an append plot that its run's store holds (``store.Chunk``)."""

    @property
    def rows(self) -> int: ...
    @property
    def last_id(self) -> int: ...
    @property
    def box(self) -> Box: ...
    @property
    def ends(self) -> Mapping[str, np.ndarray]: ...
    @property
    def read(self) -> Callable[[], Columns] | None: ...
    @property
    def frames(self) -> Callable[[], Sequence[Frame]]: ...
    @property
    def summary(self) -> Mapping[str, np.ndarray] | None: ...


@dataclass(eq=False)
class PlotState:
    """One plot: its spec, its data, and the counters sessions use to follow it.

    A replace only keeps the frame's arrays; they become columns when a page first asks
    for ``data``, so replace frames that no page sees before the next one cost nothing.
    """

    name: str
    spec: PlotSpec
    fig_kwargs: dict[str, Any]
    raw: tuple[np.ndarray, ...] | None  # the latest replace, not yet turned into columns
    levels: int = 0  # size of the color axis, for the page's color mapper
    lines: int = 0  # tandem_lines: number of lines
    shape: tuple[int, ...] = ()
    extent: Extent | None = None
    ends: LineEnds | None = None
    version: int = 0
    generation: int = 0
    start_id: int = 0  # the id of the frame its data starts from (its stored chunks say so)
    _data: GrowingColumns | None = None
    _envelope: Envelope | None = None
    _summed_rows: int = 0  # rows the envelope has been given (the last whole bucket's end may lag)
    _box: Box = None  # the box around the finite points of the first _boxed rows
    _boxed: int = 0
    was_rasterized: bool = False  # the plot it replaced was an image: half as many points do
    _windows: dict[tuple[int, int], Columns] = field(default_factory=dict)  # rows in detail
    # The last image any page had drawn of it: of its first ``rows`` rows, for ``view``.
    last_image: tuple[int, Viewport, np.ndarray] | None = None
    bad: int = 0  # a line plot's non-finite values (NaN, inf), as its clients counted them...
    bad_at: list[float] = field(default_factory=list)  # ...and the x of the first MARKS

    @property
    def data(self) -> GrowingColumns:
        """The plot's columns (computed from the latest replace on first use)."""
        if self.raw is not None:
            columns, self.extent, self.ends = plot_columns(self.spec, self.raw)
            self._data, self.raw = GrowingColumns(columns, (self.start_id, self.ends)), None
        assert self._data is not None
        return self._data

    def append(self, spec: PlotSpec, arrays: tuple[np.ndarray, ...], frame_id: int = 0) -> None:
        """Extend the columns with one append call (already checked to be compatible)."""
        data, key = self.data, self.glyph_key
        columns, _, self.ends = plot_columns(spec, arrays, self.extent, self.ends)
        data.append(columns, (frame_id, self.ends))
        self.spec = spec
        if self.glyph_key != key:  # e.g. tandem_lines with another palette, or enough points
            self.version += 1
            self.last_image = None  # drawn in other colors

    @property
    def summarized(self) -> bool:
        """Whether pages show this plot as an envelope: a line plot with too many rows."""
        return self.spec.kind == "tandem_lines" and len(self.data) > DETAIL_ROWS

    def summary_rows(self, x_window: tuple[float, float] | None) -> tuple[int, int] | None:
        """The rows a page's x window shows in detail (None: the whole plot)."""
        if x_window is None:
            return None
        return self._summed_up().window(*x_window, len(self.data))

    def summary(self, rows: tuple[int, int] | None = None) -> Columns:
        """A few thousand rows that draw like all of them; ``rows`` in finer detail."""
        envelope = self._summed_up()
        inner = None
        if rows is not None:
            inner = self._windows.get(rows)
            if inner is None:
                inner = self.window_reader(rows)()
            if not inner:  # they could not be read: the summary alone
                rows, inner = None, None
        return envelope.view(self.data.view(envelope.rows), rows, inner)

    def window_ready(self, rows: tuple[int, int] | None) -> bool:
        """Whether :meth:`summary` of ``rows`` reads nothing from the store."""
        return rows is None or rows in self._windows or self.data.held(*rows)

    def window_reader(self, rows: tuple[int, int]) -> Callable[[], Columns]:
        """What reads ``rows`` in the detail a summary shows them in (from the store where
        they left memory), on any thread, and keeps it for the summaries after: rows once
        written never change. Call it on the loop; call what it returns anywhere."""
        pieces = self.data.pieces(*rows)

        def read() -> Columns:
            try:
                shown = detail(join(*pieces), rows[0])
            except StoreError as exc:  # shown without the detail; its frames still hold it
                log.error("plot %r: rows %d to %d cannot be read: %s", self.name, *rows, exc)
                shown = {}
            while len(self._windows) >= _WINDOWS:
                self._windows.pop(next(iter(self._windows)), None)
            self._windows[rows] = shown
            return shown

        return read

    def rows_reader(self, x0: float, x1: float) -> Callable[[], Columns]:
        """What reads, on any thread, the plot's rows whose x is within ``[x0, x1]`` (a
        segment's either end), at full resolution, from memory and where they left it, the
        store: a line plot with x in order reads only the pieces that hold them. Call it on
        the loop. What it returns raises StoreError if stored rows cannot be read."""
        low, high = min(x0, x1), max(x0, x1)
        data, span = self.data, None
        if self.spec.kind == "tandem_lines":
            span = self._summed_up().rows_between(low, high, len(data))
        pieces = data.pieces(*(span or (0, len(data))))
        ends = ("x0", "x1") if self.spec.kind == "multi_lines" else ("x",)

        def read() -> Columns:
            parts = []
            for piece in pieces:
                with np.errstate(invalid="ignore"):
                    inside = np.zeros(len(piece[ends[0]]), bool)
                    for end in ends:
                        inside |= (piece[end] >= low) & (piece[end] <= high)
                parts.append({k: v[inside] for k, v in piece.items()})
            return join(*parts) if parts else data.view(0, 0)

        return read

    def _summed_up(self) -> Envelope:
        """The envelope, given the rows appended since (each page's update asks: once will do)."""
        data = self.data
        if self._envelope is None:
            self._envelope = Envelope(data.view(0, 0))
        if self._summed_rows != len(data):
            _sum_up(self._envelope, data.pieces(self._envelope.rows))
            self._summed_rows = len(data)
        return self._envelope

    @property
    def points(self) -> int:
        """How many rows (points, segments) the latest data has, without turning a replace
        into columns."""
        if self.spec.kind == "tandem_lines" or self.raw is None:
            return len(self.data)
        points = math.prod(self.shape) // 2
        if self.spec.kind == "multi_lines":  # a line has a segment fewer than points
            return max(points - math.prod(self.shape[d] for d in self.spec.line_dims), 0)
        return points

    @property
    def bounds(self) -> Bounds:
        """The box around the finite points of a scatter or line plot (grown by the rows
        appended since it was last asked for: each row is looked at once)."""
        data = self.data
        if self._boxed < len(data):
            for piece in data.pieces(self._boxed):
                self._box = box_of_columns(piece, self._box)
            self._boxed = len(data)
        return bounds_of(np.empty(0), np.empty(0), self._box)

    def settle(self) -> None:
        """Take in every row held now (its bounds, or its envelope), so that rows may leave
        memory (:meth:`GrowingColumns.spill`) without being read back for either."""
        if self.spec.kind == "tandem_lines":
            self._summed_up()
        else:
            self.bounds  # noqa: B018 (computed for its effect)

    def restore(self, chunks: Sequence[StoredRows]) -> None:
        """Take the plot's rows from stored chunks (read once for its envelope, if a line
        plot, then left on disk) instead of from its first frame, applied just before."""
        first = self.data
        data = GrowingColumns({k: v[:0] for k, v in first.view(0, 0).items()})
        summing = self.spec.kind == "tandem_lines"
        envelope = _summed(first.view(0, 0), chunks) if summing else None
        box, before = None, None
        for chunk in chunks:
            read = chunk.read or self.rows_of(chunk.frames, before, chunk.rows)
            ends = LineEnds(chunk.ends["xy"], chunk.ends.get("c")) if "xy" in chunk.ends else None
            before = (chunk.last_id, ends)
            data.extend_stored(chunk.rows, before, read)
            box = merged(box, chunk.box)
        if summing and envelope is None:  # no summaries stored: read each chunk once
            envelope = Envelope(first.view(0, 0))
            _sum_up(envelope, data.pieces())
        self._data, self._box, self._boxed = data, box, len(data)
        if envelope is not None:
            self._envelope, self._summed_rows = envelope, len(data)
        if before is not None and before[1] is not None:
            self.ends = before[1]

    def rows_of(
        self, read_frames: Callable[[], Sequence[Frame]], before: Any, rows: int
    ) -> Callable[[], Columns]:
        """What makes a piece's ``rows`` rows again from the frames that brought them (read
        by ``read_frames``); ``before`` is the mark of the piece before it (None if first).
        What it returns raises StoreError if they make other than ``rows`` rows."""
        extent = None if before is None else self.extent
        ends = None if before is None else before[1]

        def load() -> Columns:
            parts, used, joined = [], extent, ends
            for frame in read_frames():  # each joins on the one before (the first: its own)
                spec = normalize(PlotSpec.from_wire(frame.opts), [a.shape for a in frame.arrays])
                columns, found, joined = plot_columns(spec, frame.arrays, used, joined)
                used = found if used is None else used
                parts.append(columns)
            made = join(*parts)
            if len(next(iter(made.values()))) != rows:
                raise StoreError(f"plot {self.name!r}: its stored frames make other rows")
            return made

        return load

    def take_bad(self, found: list[tuple[float, int]], total: int | None = None) -> None:
        """Take in non-finite values at the x of ``found`` (``total``: all of them, counted
        anew: a restart reads them from the store)."""
        if total is not None:
            self.bad, self.bad_at = total, []
        else:
            self.bad += sum(n for _, n in found)
        self.bad_at.extend(x for x, _ in found[: MARKS - len(self.bad_at)])

    def frozen(self) -> PlotState:
        """A copy that later appends to this plot leave alone (take it on the loop)."""
        plot = copy.copy(self)
        if self._data is not None:
            plot._data = self._data.head(len(self._data))
        plot._windows = dict(self._windows)
        return plot

    def head(self, rows: int, generation: int) -> PlotState:
        """The plot as it was when it held its first ``rows`` rows (in a new figure if that
        draws otherwise: fewer points may not make an image)."""
        plot = copy.copy(self)
        plot._data, plot._box, plot._boxed = self.data.head(rows), None, 0
        plot._envelope, plot._summed_rows, plot._windows = None, 0, {}
        plot.last_image, plot.generation = None, generation
        if plot.glyph_key != self.glyph_key:
            plot.version += 1
        return plot

    @property
    def rasterized(self) -> bool:
        """Whether pages show this plot as an image: a scatter or line plot with too many
        points or segments to draw one by one (unless an axis is logarithmic: the image is
        drawn on linear ones)."""
        limit = _RASTER_LIMITS.get(self.spec.kind)
        if limit is None:
            return False
        if self.was_rasterized:  # replaces near the limit don't flip it back and forth
            limit //= 2
        log_axis = "log" in (self.fig_kwargs.get("x_axis_type"), self.fig_kwargs.get("y_axis_type"))
        return self.points >= limit and not log_axis

    @property
    def glyph_key(self) -> tuple[Any, ...]:
        """What the glyphs are built from besides fig_kwargs; a change bumps ``version``."""
        spec = self.spec
        return (
            spec.kind, spec.color, spec.palette, spec.labels, self.levels, self.lines,
            self.rasterized,
        )  # fmt: skip


def _sum_up(envelope: Envelope, pieces: Iterable[Columns]) -> None:
    """Give ``envelope`` the rows from its ``rows`` on, piece by piece (no copy of them all):
    the rows a piece leaves out of a whole bucket go with the next."""
    pending: Columns | None = None
    for piece in pieces:
        pending = piece if pending is None else join(pending, piece)
        done = envelope.rows
        envelope.extend(pending)
        pending = {k: v[envelope.rows - done :] for k, v in pending.items()}


def _summed(columns: Columns, chunks: Sequence[StoredRows]) -> Envelope | None:
    """The envelope of a long line plot's stored chunks, from the summaries stored with them
    (None if some have none, or the plot is too short for its buckets to be that coarse)."""
    rows = sum(chunk.rows for chunk in chunks)
    if rows < SUMMARY_ROWS * 2 * BUCKETS or any(c.summary is None for c in chunks):
        return None
    parts = [buckets_of(c.summary) for c in chunks if c.summary is not None]
    buckets = concat(*(b for b, _ in parts))
    return Envelope.of_buckets(columns, buckets, SUMMARY_ROWS, rows, all(m for _, m in parts))


def chunk_mark(piece: Piece) -> tuple[int, int, dict[str, np.ndarray]]:
    """What storing a sealed piece of rows takes besides its columns: the ids of the first
    and last frames it holds, and the line ends the append after it joins on (as columns)."""
    first_id, last_id, ends = piece.first_mark[0], piece.mark[0], piece.mark[1]
    if ends is None:
        return first_id, last_id, {}
    return (
        first_id,
        last_id,
        {"xy": ends.xy} | ({"c": ends.color} if ends.color is not None else {}),
    )


def replaced(
    name: str,
    old: PlotState | None,
    spec: PlotSpec,
    arrays: tuple[np.ndarray, ...],
    frame_id: int,
    generation: int | None = None,
) -> PlotState:
    """The plot a replace frame makes of ``old`` (None: a new plot): its figure settings
    kept, its figure built anew if the glyph changes; ``generation`` as given, else the
    next one."""
    plot = PlotState(
        name=name,
        spec=spec,
        fig_kwargs=old.fig_kwargs if old is not None else {},
        raw=arrays,
        was_rasterized=old is not None and old.rasterized,
        levels=color_levels(arrays[0].shape, spec),
        lines=arrays[1].shape[0] if spec.kind == "tandem_lines" else 0,
        shape=data_shape(spec, arrays),
        version=old.version if old is not None else 0,
        generation=generation if generation is not None else old.generation + 1 if old else 0,
        start_id=frame_id,
    )
    if old is not None and plot.glyph_key != old.glyph_key:
        plot.version += 1
    return plot


def at_step(live: PlotState, frame: Frame, frame_id: int, rows: int | None) -> PlotState | None:
    """``live`` as a stored ``frame`` of it left it: what a page at that frame's step shows
    (an append plot: its first ``rows`` rows then; None if unknown, or if it was replaced
    since). Its generation is the frame's id, negated: no live replace has it."""
    if frame.opts.get("append"):  # the plot then: its rows up to this frame, if still these
        if rows is None or frame_id < live.start_id or not live.spec.append:
            return None
        return live.head(rows, -frame_id)
    spec = normalize(PlotSpec.from_wire(frame.opts), [a.shape for a in frame.arrays])
    return replaced(live.name, live, spec, frame.arrays, frame_id, generation=-frame_id)
