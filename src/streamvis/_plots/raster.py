"""Points and segments drawn into an image: how a page shows plots of many. No Bokeh.

A canvas without a GPU paints about 3 µs per marker (41k points: 126 ms, on every update)
and 1.6 µs per segment, and each travels as 8-16 bytes. An image of the plot's frame costs
the same to send and paint at any count. The server draws it for the x and y range the page
shows, at the page's pixel size, and draws it again when the page zooms, pans or resizes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_PIXELS",
    "MARKER_ALPHA",
    "MARKER_SIZE",
    "MAX_PIXELS",
    "PROGRESS_SECONDS",
    "RANGE_PADDING",
    "RASTER_POINTS",
    "RASTER_SEGMENTS",
    "Bounds",
    "Box",
    "PageFrame",
    "Viewport",
    "auto_view",
    "bounds_of",
    "box_of",
    "box_of_columns",
    "color_keys",
    "merged",
    "packed_rgba",
    "rasterize",
    "rasterize_pieces",
    "rasterize_segments",
    "viewport",
]

RASTER_POINTS = 20_000  # scatters with this many points are drawn as an image...
RASTER_SEGMENTS = 10_000  # ...and line plots with this many segments (each paints faster)
MARKER_SIZE = 5  # the diameter in pixels of a marker, as the page draws scatters
MARKER_ALPHA = 0.8  # and its opacity
RANGE_PADDING = 0.1  # Bokeh's DataRange1d default: the auto range adds this share of the span
DEFAULT_PIXELS = (400, 300)  # the frame's size in pixels until the page says it
MAX_PIXELS = 2048  # larger frames get a stretched image: the cost grows with its area
# Points drawn along segments for one image, at most: per pixel, and in all (~100 ms here).
# Past that, segments that cross one another many times over are drawn dotted.
SAMPLES_PER_PIXEL, MAX_SAMPLES = 8, 2_000_000
BATCH_ROWS = 1 << 18  # rows drawn at a time: the temporaries stay ~30 MB at any count
PROGRESS_SECONDS = 1.0  # a long drawing shows what it has drawn this often


@dataclass(frozen=True)
class Bounds:
    """The smallest box around a plot's finite points (a point's box is widened to 1)."""

    left: float
    right: float
    bottom: float
    top: float


@dataclass(frozen=True)
class Viewport:
    """What the page shows: the x and y range of the plot's frame, and its size in pixels."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int
    height: int


# The least and greatest finite x and y of some points, or None if none is finite.
Box = tuple[float, float, float, float] | None


def box_of(x: np.ndarray, y: np.ndarray, box: Box = None) -> Box:
    """The box around the finite points, grown to take in ``box`` (boxes of parts merge)."""
    if not len(x):
        return box
    with np.errstate(invalid="ignore"):  # where every value is finite (most often), four
        found = float(x.min()), float(x.max()), float(y.min()), float(y.max())  # passes do
    if all(math.isfinite(v) for v in found):
        return merged(box, found)
    finite = np.isfinite(x) & np.isfinite(y)
    if not finite.any():
        return box
    xs, ys = x[finite], y[finite]
    return merged(box, (float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())))


def box_of_columns(columns: Mapping[str, np.ndarray], box: Box = None) -> Box:
    """The box around a scatter's points or a line plot's segments, given as columns."""
    if "x0" in columns:
        box = box_of(columns["x0"], columns["y0"], box)
        return box_of(columns["x1"], columns["y1"], box)
    return box_of(columns["x"], columns["y"], box)


def merged(a: Box, b: Box) -> Box:
    """The box around two boxes (either may be None: no points)."""
    if a is None or b is None:
        return a if b is None else b
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def bounds_of(x: np.ndarray, y: np.ndarray, box: Box = None) -> Bounds:
    """The box around the finite points (and ``box``); with none, the unit box around the
    origin."""
    box = box_of(x, y, box)
    if box is None:
        return Bounds(-0.5, 0.5, -0.5, 0.5)
    (left, right), (bottom, top) = _widened(box[0], box[1]), _widened(box[2], box[3])
    return Bounds(left, right, bottom, top)


def _widened(low: float, high: float) -> tuple[float, float]:
    low, high = float(low), float(high)
    return (low, high) if high > low else (low - 0.5, high + 0.5)


def auto_view(bounds: Bounds, pixels: tuple[int, int] = DEFAULT_PIXELS) -> Viewport:
    """The view a page's auto ranges give ``bounds``: each range padded by Bokeh's default."""
    dx = (bounds.right - bounds.left) * RANGE_PADDING / 2
    dy = (bounds.top - bounds.bottom) * RANGE_PADDING / 2
    return Viewport(
        bounds.left - dx, bounds.right + dx, bounds.bottom - dy, bounds.top + dy, *pixels
    )


@dataclass(frozen=True)
class PageFrame:
    """What a page last said of a plot's frame (None where it has not said yet): its x and
    y range and size in pixels; and the bounds of the data it was last sent."""

    x_range: tuple[float, float] | None = None
    y_range: tuple[float, float] | None = None
    pixels: tuple[int, int] | None = None
    sent: Bounds | None = None
    before: Bounds | None = None  # the bounds sent before: the page may not have taken `sent`


def viewport(bounds: Bounds, frame: PageFrame) -> Viewport:
    """The view to draw ``bounds``'s points for, axis by axis: the page's own range once it
    has zoomed or panned (or was given one); while the range is still the auto range of the
    data it was sent, the auto range of these bounds, which the page is about to take."""
    width, height = frame.pixels if frame.pixels and min(frame.pixels) > 0 else DEFAULT_PIXELS
    pixels = min(width, MAX_PIXELS), min(height, MAX_PIXELS)
    auto = auto_view(bounds, pixels)
    sent = [auto_view(b, pixels) for b in (frame.sent, frame.before) if b is not None]
    x = _axis(frame.x_range, (auto.x0, auto.x1), [(v.x0, v.x1) for v in sent])
    y = _axis(frame.y_range, (auto.y0, auto.y1), [(v.y0, v.y1) for v in sent])
    return Viewport(*x, *y, *pixels)


def _axis(
    page: tuple[float, float] | None, auto: tuple[float, float], sent: list[tuple[float, float]]
) -> tuple[float, float]:
    """One axis of :func:`viewport` (a flipped range is drawn as its increasing twin); the
    page still follows its data if its range is the auto range of bounds it was ``sent``."""
    if page is None:
        return auto
    low, high = sorted(page)
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        return auto
    for s in sent:
        if all(abs(p - q) <= 1e-9 * (s[1] - s[0]) for p, q in zip(page, s, strict=True)):
            return auto  # equal up to rounding: the page computes auto ranges in its arithmetic
    return low, high


def packed_rgba(colors: Sequence[str], alpha: float = MARKER_ALPHA) -> np.ndarray:
    """``#rrggbb`` colors as uint32 pixels the way Bokeh's image_rgba reads them (bytes R G B A)."""
    a = round(alpha * 255)
    values = []
    for color in colors:
        r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
        values.append(r | g << 8 | b << 16 | a << 24)
    return np.array(values, np.uint32)


def color_keys(index: np.ndarray, levels: int, ncolors: int) -> np.ndarray:
    """Palette positions of color indices, as the page's linear_cmap(0, levels - 1) maps them."""
    high = max(levels - 1, 1)
    keys = np.floor(index.astype(np.float64) / high * ncolors).astype(np.intp)
    return np.clip(keys, 0, ncolors - 1)


def _disk(diameter: int) -> list[tuple[int, int]]:
    """Pixel offsets a marker of ``diameter`` pixels covers around its center pixel."""
    r = diameter / 2
    reach = math.ceil(r - 0.5)
    return [
        (dy, dx)
        for dy in range(-reach, reach + 1)
        for dx in range(-reach, reach + 1)
        if dx * dx + dy * dy <= r * r
    ]


def rasterize(
    x: np.ndarray,
    y: np.ndarray,
    view: Viewport,
    palette: np.ndarray,
    color: np.ndarray | None = None,
    levels: int = 1,
    marker: int = MARKER_SIZE,
) -> np.ndarray:
    """Draw points into a (height, width) uint32 image of ``view``, row 0 at ``view.y0``.

    ``palette`` holds packed colors: each point's ``color`` index (of ``levels``) picks one
    as the page's color mapper would; without ``color`` every point takes the first. A
    later point covers an earlier one where they overlap, as markers painted in order do.
    """
    column, row = _pixels(x, y, view)
    shown = _stamp(column, row, view.width, view.height, _disk(marker))
    return _paint(shown, palette, color, levels)


def rasterize_segments(
    x0: np.ndarray,
    y0: np.ndarray,
    x1: np.ndarray,
    y1: np.ndarray,
    view: Viewport,
    palette: np.ndarray,
    color: np.ndarray | None = None,
    levels: int = 1,
    share: float = 1.0,
) -> np.ndarray:
    """Draw segments as lines one pixel wide into an image of ``view`` (as :func:`rasterize`
    draws points: colored by ``color``, a later segment over an earlier one); ``share`` is
    the part of an image's sampling budget these segments may take."""
    column0, row0 = _pixels(x0, y0, view)
    column1, row1 = _pixels(x1, y1, view)
    budget = max(round(min(SAMPLES_PER_PIXEL * view.width * view.height, MAX_SAMPLES) * share), 1)
    segment, column, row = _along(column0, row0, column1, row1, view.width, view.height, budget)
    shown = _stamp(column, row, view.width, view.height, [(0, 0)])
    if len(segment):  # each pixel's last sample -> that sample's segment
        shown = np.where(shown >= 0, segment[np.maximum(shown, 0)], -1)
    return _paint(shown, palette, color, levels)


def rasterize_pieces(
    kind: str,
    pieces: Iterable[Mapping[str, np.ndarray]],
    total: int,
    view: Viewport,
    palette: np.ndarray,
    levels: int = 1,
    progress: Callable[[np.ndarray], None] | None = None,
) -> np.ndarray:
    """Draw a plot's columns, given as consecutive pieces (``x, y[, c]`` for a scatter,
    ``x0, y0, x1, y1[, c]`` for line segments) *newest first*, as :func:`rasterize` and
    :func:`rasterize_segments` draw them whole, but BATCH_ROWS rows at a time, so a draw of
    millions takes no more memory than one of a million (and the same image, up to how the
    sampling budget of crowded segments is shared). ``total`` is how many rows they hold;
    they are read one after another, so they may be read from disk as they come.

    Later rows cover earlier ones, so drawing the newest first and each older batch only
    where nothing is yet gives the same image, and any image on the way shows the newest
    rows: ``progress`` is given one every PROGRESS_SECONDS of drawing."""
    image = np.zeros((view.height, view.width), np.uint32)
    shown = time.monotonic()
    for batch in _batches(pieces, BATCH_ROWS):
        color = batch.get("c")
        if kind == "multi_lines":
            x0, y0, x1, y1 = (batch[k] for k in ("x0", "y0", "x1", "y1"))
            share = len(x0) / max(total, 1)
            part = rasterize_segments(x0, y0, x1, y1, view, palette, color, levels, share)
        else:
            part = rasterize(batch["x"], batch["y"], view, palette, color, levels)
        np.copyto(image, part, where=image == 0)  # an older batch under a newer one
        if progress is not None and time.monotonic() - shown >= PROGRESS_SECONDS:
            progress(image.copy())
            shown = time.monotonic()
    return image


def _batches(
    pieces: Iterable[Mapping[str, np.ndarray]], rows: int
) -> Iterator[Mapping[str, np.ndarray]]:
    """Pieces, newest first, joined into batches of about ``rows`` rows (a larger piece
    alone), each batch's rows in their order."""
    group: list[Mapping[str, np.ndarray]] = []
    size = 0
    for piece in pieces:
        length = len(next(iter(piece.values()))) if piece else 0
        if group and size + length > rows:
            yield _joined(group[::-1])
            group, size = [], 0
        group.append(piece)
        size += length
    if group:
        yield _joined(group[::-1])


def _joined(group: list[Mapping[str, np.ndarray]]) -> Mapping[str, np.ndarray]:
    if len(group) == 1:
        return group[0]
    return {k: np.concatenate([piece[k] for piece in group]) for k in group[0]}


def _pixels(x: np.ndarray, y: np.ndarray, view: Viewport) -> tuple[np.ndarray, np.ndarray]:
    """Data coordinates as pixel coordinates of ``view`` (pixel j covers [j, j + 1))."""
    with np.errstate(invalid="ignore", over="ignore"):
        column = (x - view.x0) * (view.width / (view.x1 - view.x0))
        row = (y - view.y0) * (view.height / (view.y1 - view.y0))
    return column, row


def _along(
    column0: np.ndarray,
    row0: np.ndarray,
    column1: np.ndarray,
    row1: np.ndarray,
    width: int,
    height: int,
    budget: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points half a pixel apart along each segment's part inside the image (plus a pixel):
    (the segment of each point, its column, its row)."""
    d_column, d_row = column1 - column0, row1 - row0
    low, high = np.zeros(len(column0)), np.ones(len(column0))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for start, delta, size in ((column0, d_column, width), (row0, d_row, height)):
            a, b = (-1 - start) / delta, (size + 1 - start) / delta  # where it crosses the edges
            low, high = np.fmax(low, np.fmin(a, b)), np.fmin(high, np.fmax(a, b))
            high[(delta == 0) & ((start < -1) | (start > size + 1))] = -1.0  # parallel, outside
        finite = np.isfinite(column0) & np.isfinite(row0) & np.isfinite(column1) & np.isfinite(row1)
        kept = np.flatnonzero(finite & (low <= high))
        low, high = low[kept], high[kept]
        length = (high - low) * np.maximum(np.abs(d_column[kept]), np.abs(d_row[kept]))
    counts = np.ceil(2 * length).astype(np.int64) + 1  # half a pixel apart: no pixel skipped
    if counts.sum() > budget:  # long segments crossing each other: fewer points each
        counts = np.maximum(counts * budget // counts.sum(), 1)
    owner = np.repeat(np.arange(len(kept)), counts)
    step = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    t = low[owner] + (high - low)[owner] * (step / np.maximum(counts - 1, 1)[owner])
    segment = kept[owner]
    return segment, column0[segment] + t * d_column[segment], row0[segment] + t * d_row[segment]


def _stamp(
    column: np.ndarray, row: np.ndarray, width: int, height: int, offsets: list[tuple[int, int]]
) -> np.ndarray:
    """A (height, width) image of the index of the last item covering each pixel (-1: none);
    item i sits at pixel (floor(row[i]), floor(column[i])) and covers ``offsets`` around it."""
    reach = max(abs(d) for offset in offsets for d in offset)
    with np.errstate(invalid="ignore"):
        column, row = np.floor(column), np.floor(row)
        near = (
            (column >= -reach) & (column < width + reach) & (row >= -reach) & (row < height + reach)
        )
    which = np.flatnonzero(near)  # NaN compares False: non-finite points drop out here
    padded_width = width + 2 * reach
    flat = np.full((height + 2 * reach) * padded_width, -1, np.int64)
    cells = (row[which] + reach) * padded_width + (column[which] + reach)
    np.maximum.at(flat, cells.astype(np.int64), which)  # where items share a pixel, the last
    last = flat.reshape(height + 2 * reach, padded_width)
    shown = np.full((height, width), -1, np.int64)
    for dy, dx in offsets:  # an item at (r, c) covers (r + dy, c + dx): the latest wins
        np.maximum(
            shown,
            last[reach - dy : reach - dy + height, reach - dx : reach - dx + width],
            out=shown,
        )
    return shown


def _paint(
    shown: np.ndarray, palette: np.ndarray, color: np.ndarray | None, levels: int
) -> np.ndarray:
    """Color an image of item indices (-1: background, transparent)."""
    image = np.zeros(shown.shape, np.uint32)
    covered = shown >= 0
    if color is None:
        image[covered] = palette[0]
    else:
        image[covered] = palette[color_keys(color[shown[covered]], levels, len(palette))]
    return image
