"""Array -> plot columns: the pure transforms every plot kind shares (numpy only, no Bokeh).

Columns are 1-D numpy arrays, float32 where the data is float32 (float64 otherwise), so
Bokeh ships them to the browser as binary buffers. They may be strided views of the input:
the run state copies them once, into its own buffers. Colors travel as an integer index column
``c`` that the page maps through the palette, never as strings.

- scatter:      x, y[, c]           one row per point
- multi_lines:  x0, y0, x1, y1[, c] one row per segment between consecutive points of a line
- tandem_lines: x, y0 .. y{K-1}     one row per call; a page gets them per line instead
                (``per_line``: xs, ys, c), drawn by one glyph
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._specs import MAX_TANDEM_LINES, GridSpec, PlotSpec

__all__ = [
    "Columns",
    "Extent",
    "LineEnds",
    "Points",
    "call_rows",
    "color_levels",
    "extent_of",
    "index_along",
    "line_columns",
    "per_line",
    "plot_columns",
    "points",
    "scatter_columns",
    "tandem_columns",
]

Columns = dict[str, np.ndarray]
Extent = tuple[float, float]


def _float(values: np.ndarray) -> np.ndarray:
    """Return ``values`` as float32 if it is a float32/float16 array, else as float64."""
    if values.dtype in (np.float32, np.float16):
        return values.astype(np.float32, copy=False)
    return values.astype(np.float64, copy=False)


def index_along(shape: tuple[int, ...], axis: int) -> np.ndarray:
    """For a C-ordered flattening of ``shape``, each element's index along ``axis`` (int32)."""
    size = shape[axis]
    view = np.arange(size, dtype=np.int32).reshape(
        [size if i == axis else 1 for i in range(len(shape))]
    )
    return np.broadcast_to(view, shape).reshape(-1)


def extent_of(xy: np.ndarray) -> Extent:
    """The (x, y) extent of finite points in an (N, 2) array; a zero or empty extent counts as 1."""
    out = []
    for values in (xy[..., 0], xy[..., 1]):
        finite = values[np.isfinite(values)]
        span = float(finite.max() - finite.min()) if finite.size else 0.0
        out.append(span if span > 0 and math.isfinite(span) else 1.0)
    return out[0], out[1]


def _offsets(cells: np.ndarray, grid: GridSpec, extent: Extent) -> tuple[np.ndarray, np.ndarray]:
    """x and y offsets of grid cells: columns to the right, rows downward."""
    row, col = np.divmod(cells, grid.num_columns)
    return col * (grid.padding_factor * extent[0]), row * (-grid.padding_factor * extent[1])


@dataclass(frozen=True)
class Points:
    """Points of an array in a chosen axis order: xy is (N, 2); ``rest`` is the shape of N."""

    xy: np.ndarray
    rest: tuple[int, ...]
    color: np.ndarray | None
    extent: Extent | None


def points(
    data: np.ndarray, spec: PlotSpec, order: tuple[int, ...], extent: Extent | None
) -> Points:
    """Flatten ``data`` to (x, y) points, ordering its non-spatial axes as ``order``.

    Applies the grid offsets (using ``extent`` if given, else this data's own extent) and
    computes the color index of every point. ``spec`` must be normalized (axes >= 0).
    """
    moved = np.transpose(data, (*order, spec.spatial_dim))
    rest = moved.shape[:-1]
    xy = _float(moved.reshape(-1, 2))
    color = None
    if spec.color is not None:
        color = index_along(rest, order.index(spec.color.dim))
    if spec.grid is not None:
        if extent is None:
            extent = extent_of(xy)
        cells = index_along(rest, order.index(spec.grid.dim))
        dx, dy = _offsets(cells, spec.grid, extent)
        xy = np.stack([xy[:, 0] + dx.astype(xy.dtype), xy[:, 1] + dy.astype(xy.dtype)], axis=1)
    return Points(xy=xy, rest=rest, color=color, extent=extent)


def scatter_columns(
    data: np.ndarray, spec: PlotSpec, extent: Extent | None = None
) -> tuple[Columns, Points]:
    """One row per point: every index combination of the non-spatial axes, in C order."""
    order = tuple(d for d in range(data.ndim) if d != spec.spatial_dim)
    pts = points(data, spec, order, extent)
    columns: Columns = {
        "x": pts.xy[:, 0],
        "y": pts.xy[:, 1],
    }
    if pts.color is not None:
        columns["c"] = pts.color
    return columns, pts


@dataclass(frozen=True)
class LineEnds:
    """The last point (and color index) of every line, so that appended points join on."""

    xy: np.ndarray  # (L, 2)
    color: np.ndarray | None  # (L,)


def line_columns(
    data: np.ndarray, spec: PlotSpec, extent: Extent | None = None, ends: LineEnds | None = None
) -> tuple[Columns, Points, LineEnds | None]:
    """One row per segment of each line; lines are index combinations of ``spec.line_dims``.

    With ``ends`` (the previous call's last points), each line first joins its old end to
    its first new point, so appending extends lines instead of starting new ones.
    """
    point_dims = tuple(
        d for d in range(data.ndim) if d != spec.spatial_dim and d not in spec.line_dims
    )
    order = (*spec.line_dims, *point_dims)
    pts = points(data, spec, order, extent)
    num_lines = math.prod(data.shape[d] for d in spec.line_dims)
    per_line = math.prod(data.shape[d] for d in point_dims)
    xy = pts.xy.reshape(num_lines, per_line, 2)
    color = None if pts.color is None else pts.color.reshape(num_lines, per_line)
    if ends is not None and ends.xy.shape[0] == num_lines:
        xy = np.concatenate([ends.xy[:, None, :].astype(xy.dtype), xy], axis=1)
        if color is not None:
            old = ends.color if ends.color is not None else color[:, 0]
            color = np.concatenate([old[:, None], color], axis=1)
    new_ends = ends
    if xy.shape[1] > 0:
        new_ends = LineEnds(xy[:, -1, :].copy(), None if color is None else color[:, -1].copy())
    start, stop = xy[:, :-1, :].reshape(-1, 2), xy[:, 1:, :].reshape(-1, 2)
    columns: Columns = {
        "x0": start[:, 0],
        "y0": start[:, 1],
        "x1": stop[:, 0],
        "y1": stop[:, 1],
    }
    if color is not None:
        columns["c"] = np.ascontiguousarray(color[:, :-1]).reshape(-1)
    return columns, pts, new_ends


def tandem_columns(x: np.ndarray, ys: np.ndarray) -> Columns:
    """One row: the shared x and one y column per line."""
    columns: Columns = {"x": _float(x.reshape(1)).astype(np.float64)}
    rows = _float(ys.reshape(-1, 1))  # iterating it gives each line's one-row column
    columns.update(zip(_Y_NAMES[: len(rows)], rows, strict=True))
    return columns


_Y_NAMES = tuple(f"y{k}" for k in range(MAX_TANDEM_LINES))


def per_line(columns: Columns) -> dict[str, Any]:
    """Tandem columns as one row per line (x, values, color index), for one multi-line glyph:
    BokehJS indexes one by a box per line, but a line glyph by every point.

    The shared x travels once per line, so as float32 where that is exact (steps up to 2**24).
    """
    x = columns["x"]
    with np.errstate(over="ignore"):  # beyond float32's range: inf, so unequal, so kept
        narrow = x.astype(np.float32)
    if np.array_equal(narrow, x, equal_nan=True):
        x = narrow
    ys = [v for k, v in columns.items() if k != "x"]
    return {"xs": [x] * len(ys), "ys": ys, "c": np.arange(len(ys), dtype=np.int32)}


def plot_columns(
    spec: PlotSpec,
    arrays: tuple[np.ndarray, ...],
    extent: Extent | None = None,
    ends: LineEnds | None = None,
) -> tuple[Columns, Extent | None, LineEnds | None]:
    """Columns of one call of any plot kind, with the extent and line ends the next append needs."""
    if spec.kind == "scatter":
        columns, pts = scatter_columns(arrays[0], spec, extent)
        return columns, pts.extent, None
    if spec.kind == "multi_lines":
        columns, pts, ends = line_columns(arrays[0], spec, extent, ends)
        return columns, pts.extent, ends
    return tandem_columns(arrays[0], arrays[1]), None, None


def call_rows(
    spec: PlotSpec, shape: tuple[int, ...], lines: int | None = None
) -> tuple[int, int | None]:
    """How many rows :func:`plot_columns` makes of a call whose data has ``shape``, without
    making them; and for a line plot, how many lines end where the next append joins on.
    ``lines``: the lines the plot's rows end with (None: none; a replace starts afresh)."""
    if spec.kind == "tandem_lines":
        return 1, None
    points = math.prod(n for d, n in enumerate(shape) if d != spec.spatial_dim)
    if spec.kind == "scatter":
        return points, None
    num_lines = math.prod(shape[d] for d in spec.line_dims)
    per_line = points // num_lines if num_lines else 0
    per_line += lines == num_lines  # each line's old end joins its first new point
    if not num_lines or not per_line:
        return 0, lines
    return num_lines * (per_line - 1), num_lines


def color_levels(data_shape: tuple[int, ...], spec: PlotSpec) -> int:
    """How many distinct color indices a call produces (the size of the color axis)."""
    return data_shape[spec.color.dim] if spec.color is not None else 0
