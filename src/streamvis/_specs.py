"""What a plotting call asks for, checked against an array's shape, with no I/O.

The client checks a call here before it enqueues anything, so a wrong shape raises at the
caller's line; the server checks the same spec again when the frame arrives.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from ._errors import ArgumentError, ShapeError, UnknownPlot
from ._protocol import check_name

__all__ = [
    "MAX_AXIS",
    "MAX_GRID_COLUMNS",
    "MAX_LAYOUT_CELLS",
    "MAX_TANDEM_LINES",
    "PLOT_KINDS",
    "Cell",
    "ColorSpec",
    "GridSpec",
    "PlotKind",
    "PlotSpec",
    "check_compatible",
    "check_in_layout",
    "check_int",
    "check_labels",
    "check_layout",
    "data_shape",
    "merge_layout",
    "normalize",
    "resolve_palette",
    "sample_palette",
]

PlotKind = Literal["scatter", "multi_lines", "tandem_lines"]
PLOT_KINDS: tuple[PlotKind, ...] = ("scatter", "multi_lines", "tandem_lines")


@lru_cache(maxsize=256)
def resolve_palette(name: str) -> tuple[str, ...]:
    """Return the colors of a Bokeh palette by name ('Viridis256', or a family like 'Viridis')."""
    import bokeh.palettes as palettes  # light: imports neither tornado nor bokeh.models

    value = getattr(palettes, name, None) if not name.startswith("_") else None
    if isinstance(value, tuple) and value and all(isinstance(c, str) for c in value):
        return value
    family = palettes.all_palettes.get(name)
    if family:
        return tuple(family[max(family)])
    known = sorted(set(palettes.all_palettes) | set(palettes.__palettes__))
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ArgumentError(
        f"unknown palette {name!r}: use a name from bokeh.palettes such as 'Viridis256'{hint}"
    )


def sample_palette(palette: Sequence[str], n: int) -> list[str]:
    """Pick ``n`` colors spread evenly across ``palette`` (repeating if it is shorter)."""
    if n <= 1:
        return list(palette[:1]) * n
    last = len(palette) - 1
    return [palette[round(i * last / (n - 1))] for i in range(n)]


MAX_AXIS = 64  # dims of an array are far fewer; larger values are mistakes
MAX_GRID_COLUMNS = 1024
MAX_LAYOUT_CELLS = 64  # rows and columns of a layout
MAX_TANDEM_LINES = 256
MAX_LABEL = 100  # characters of a line's name


def check_int(value: object, what: str, minimum: int = -MAX_AXIS, maximum: int = MAX_AXIS) -> int:
    """Return ``value`` as a plain int (numpy integers too) in [minimum, maximum], else raise."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = int(value.__index__())  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        raise ArgumentError(f"{what} must be an int, got {value!r}") from None
    if not minimum <= number <= maximum:
        raise ArgumentError(f"{what} must be between {minimum} and {maximum}, got {number}")
    return number


@dataclass(frozen=True)
class ColorSpec:
    """Color each point (or line) by its index along array axis ``dim``, across ``palette``."""

    palette: str
    dim: int

    def __post_init__(self) -> None:
        if not isinstance(self.palette, str):
            raise ArgumentError(f"ColorSpec palette must be a str, got {self.palette!r}")
        resolve_palette(self.palette)
        object.__setattr__(self, "dim", check_int(self.dim, "ColorSpec dim"))


@dataclass(frozen=True)
class GridSpec:
    """Spread slices along axis ``dim`` into a wrapped grid of cells inside one plot.

    Slice g goes to cell (g // num_columns, g % num_columns); cells are offset by
    ``padding_factor`` times the data's x and y extent, rows going downward.
    """

    dim: int
    num_columns: int
    padding_factor: float = 1.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "dim", check_int(self.dim, "GridSpec dim"))
        object.__setattr__(
            self,
            "num_columns",
            check_int(self.num_columns, "GridSpec num_columns", 1, MAX_GRID_COLUMNS),
        )
        pad = self.padding_factor
        if isinstance(pad, bool) or not isinstance(pad, (int, float)) or not math.isfinite(pad):
            raise ArgumentError(f"GridSpec padding_factor must be a finite number, got {pad!r}")
        if pad <= 0:
            raise ArgumentError(f"GridSpec padding_factor must be > 0, got {pad}")
        object.__setattr__(self, "padding_factor", float(pad))


@dataclass(frozen=True)
class PlotSpec:
    """Everything about one plotting call except its arrays."""

    kind: PlotKind
    append: bool = False
    spatial_dim: int = -1
    line_dims: tuple[int, ...] = ()
    color: ColorSpec | None = None
    grid: GridSpec | None = None
    palette: str | None = None
    fig_kwargs: Mapping[str, Any] | None = field(default=None, compare=False)
    labels: tuple[str, ...] | None = None  # tandem_lines: each line's name, for its legend

    def to_wire(self) -> dict[str, Any]:
        """Return the msgpack-able options dict sent in a frame header."""
        opts: dict[str, Any] = {"kind": self.kind, "append": self.append}
        if self.kind != "tandem_lines":
            opts["spatial_dim"] = self.spatial_dim
        if self.kind == "multi_lines":
            opts["line_dims"] = list(self.line_dims)
        if self.color is not None:
            opts["color"] = [self.color.palette, self.color.dim]
        if self.grid is not None:
            opts["grid"] = [self.grid.dim, self.grid.num_columns, self.grid.padding_factor]
        if self.palette is not None:
            opts["palette"] = self.palette
        if self.fig_kwargs is not None:
            opts["fig"] = dict(self.fig_kwargs)
        if self.labels is not None:
            opts["labels"] = list(self.labels)
        return opts

    @classmethod
    def from_wire(cls, opts: Mapping[str, Any]) -> PlotSpec:
        """Rebuild a spec from a frame's options; raise ArgumentError naming the field that
        is malformed."""
        kind = opts.get("kind")
        if not isinstance(kind, str) or kind not in PLOT_KINDS:
            raise ArgumentError(f"unknown plot kind {kind!r}; expected one of {PLOT_KINDS}")
        color, grid = _wire_list(opts, "color", 2), _wire_list(opts, "grid", 3)
        fig = opts.get("fig")
        if fig is not None and not isinstance(fig, dict):
            raise ArgumentError(f"fig_kwargs must be a dict, got {fig!r}")
        palette = opts.get("palette")
        if palette is not None:
            if not isinstance(palette, str):
                raise ArgumentError(
                    f"opts.palette is {palette!r}; expected a palette name like 'Viridis256'"
                )
            resolve_palette(palette)
        line_dims = _wire_list(opts, "line_dims", None) or []
        labels = _wire_list(opts, "labels", None)
        return cls(
            kind=kind,
            append=bool(opts.get("append", False)),
            spatial_dim=check_int(opts.get("spatial_dim", -1), "spatial_dim"),
            line_dims=tuple(check_int(d, "line_dims") for d in line_dims),
            color=None if color is None else ColorSpec(*color),
            grid=None if grid is None else GridSpec(*grid),
            palette=palette,
            fig_kwargs=fig,
            labels=None if labels is None else check_labels(labels),
        )


def check_labels(labels: object) -> tuple[str, ...]:
    """``labels`` as a tuple of line names; raise ArgumentError unless they are strings."""
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise ArgumentError(f"labels must be a list of line names, got {labels!r}")
    if not all(isinstance(label, str) and len(label) <= MAX_LABEL for label in labels):
        raise ArgumentError(
            f"labels must be strings of at most {MAX_LABEL} characters, got {list(labels)!r}"
        )
    return tuple(labels)


def _wire_list(opts: Mapping[str, Any], key: str, length: int | None) -> list[Any] | None:
    """``opts[key]`` if it is a list (of ``length`` items, if given), None if absent."""
    value = opts.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or (length is not None and len(value) != length):
        items = f"{length} items" if length is not None else "items"
        raise ArgumentError(f"opts.{key} is {value!r}; expected a list of {items}")
    return value


def _axis(dim: object, ndim: int, what: str, shape: tuple[int, ...]) -> int:
    dim = check_int(dim, what)
    if not -ndim <= dim < ndim:
        raise ShapeError(f"{what}={dim} is out of range for an array of shape {shape}")
    return dim % ndim


def normalize(spec: PlotSpec, shapes: Sequence[tuple[int, ...]]) -> PlotSpec:
    """Check ``spec`` against the shapes of its arrays; return it with axes made non-negative.

    Raises ShapeError naming the axis and the shape when they do not fit.
    """
    if spec.kind == "tandem_lines":
        _check_tandem(shapes)
        lines = shapes[1][0]
        if spec.labels is not None and len(spec.labels) != lines:
            raise ShapeError(
                f"tandem_lines labels has {len(spec.labels)} names for {lines} lines "
                f"(ys has {lines} values): give one name per line"
            )
        return spec
    if len(shapes) != 1:
        raise ShapeError(f"{spec.kind} takes one array, got {len(shapes)}")
    return _normalize_axes(spec, shapes[0])


def _check_tandem(shapes: Sequence[tuple[int, ...]]) -> None:
    """Raise ShapeError unless ``shapes`` are a tandem call's: one x, and one value per line."""
    if len(shapes) != 2:
        raise ShapeError(f"tandem_lines takes x and ys, got {len(shapes)} arrays")
    (x_shape, ys_shape) = shapes
    if math.prod(x_shape) != 1:
        raise ShapeError(f"tandem_lines x must be a single number, got shape {x_shape}")
    if len(ys_shape) != 1:
        raise ShapeError(f"tandem_lines ys must be 1-D (one value per line), got shape {ys_shape}")
    if ys_shape[0] == 0:
        raise ShapeError("tandem_lines ys is empty: give at least one value (one per line)")
    if ys_shape[0] > MAX_TANDEM_LINES:
        raise ShapeError(
            f"tandem_lines ys has {ys_shape[0]} values, one line each; at most "
            f"{MAX_TANDEM_LINES} lines are drawn: for more, use multi_lines or scatter"
        )


def _normalize_axes(spec: PlotSpec, shape: tuple[int, ...]) -> PlotSpec:
    """``spec`` of a scatter or multi_lines call with its axes checked against ``shape`` and
    made non-negative."""
    ndim = len(shape)
    if ndim == 0:
        raise ShapeError(f"{spec.kind} needs an array with a spatial axis of size 2, got a scalar")
    spatial = _axis(spec.spatial_dim, ndim, "spatial_dim", shape)
    if shape[spatial] != 2:
        raise ShapeError(
            f"spatial_dim={spec.spatial_dim} has size {shape[spatial]} in shape {shape}; "
            "it must have size 2 and hold (x, y)"
        )

    def data_axis(dim: int, what: str) -> int:
        axis = _axis(dim, ndim, what, shape)
        if axis == spatial:
            raise ShapeError(f"{what}={dim} is the spatial axis; choose another axis of {shape}")
        return axis

    line_dims: tuple[int, ...] = ()
    if spec.kind == "multi_lines":
        line_dims = tuple(data_axis(d, "line_dims") for d in spec.line_dims)
        if len(set(line_dims)) != len(line_dims):
            raise ShapeError(f"line_dims={spec.line_dims} repeats an axis")
    color = spec.color
    if color is not None:
        color = ColorSpec(color.palette, data_axis(color.dim, "ColorSpec dim"))
    grid = spec.grid
    if grid is not None:
        grid = GridSpec(data_axis(grid.dim, "GridSpec dim"), grid.num_columns, grid.padding_factor)
        if spec.kind == "multi_lines" and grid.dim not in line_dims:
            raise ShapeError(
                f"GridSpec dim={spec.grid.dim if spec.grid else None} must be one of "
                f"line_dims={spec.line_dims}, so that each line lies in one grid cell"
            )
    return PlotSpec(
        kind=spec.kind,
        append=spec.append,
        spatial_dim=spatial,
        line_dims=line_dims,
        color=color,
        grid=grid,
        palette=spec.palette,
        fig_kwargs=spec.fig_kwargs,
    )


def data_shape(spec: PlotSpec, arrays: Sequence[Any]) -> tuple[int, ...]:
    """The shape that defines a plot's lines, colors and grid: ys for tandem_lines, else data."""
    return tuple(arrays[1 if spec.kind == "tandem_lines" else 0].shape)


def check_compatible(
    name: str, old: PlotSpec, old_shape: tuple[int, ...], new: PlotSpec, shape: tuple[int, ...]
) -> None:
    """Raise ShapeError if a call cannot go to a plot that holds ``old`` data.

    The kind never changes; appending further needs the same lines, color and grid axes.
    """
    if old.kind != new.kind:
        raise ShapeError(
            f"plot {name!r} is a {old.kind} plot and cannot take {new.kind} data: "
            "use another plot name, or clear the run"
        )
    if not new.append:
        return
    problem = None
    if new.kind == "tandem_lines":
        if shape != old_shape:
            problem = f"it has {old_shape[0]} lines but ys has {shape[0]} values"
    elif len(shape) != len(old_shape) or new.spatial_dim != old.spatial_dim:
        problem = "the number of axes or the spatial axis differs"
    elif new.line_dims != old.line_dims or new.color != old.color or new.grid != old.grid:
        problem = "its line_dims, color or grid differ from the data already plotted"
    else:
        fixed = {*new.line_dims, *(s.dim for s in (new.color, new.grid) if s is not None)}
        changed = [d for d in sorted(fixed) if shape[d] != old_shape[d]]
        if changed:
            problem = f"axes {changed} (its lines, color or grid axes) changed size"
    if problem is not None:
        raise ShapeError(
            f"cannot append to plot {name!r}: {problem} (plotted shape {old_shape}, new shape "
            f"{shape}); send append=False to replace its data, or use another plot name"
        )


Cell = tuple[int, int, int, int]


def check_layout(layout: Mapping[str, Sequence[int]]) -> dict[str, Cell]:
    """Validate ``name -> (row, col, rowspan, colspan)``; raise ArgumentError on overlaps."""
    if not isinstance(layout, Mapping) or not layout:
        raise ArgumentError(
            "layout must be a non-empty dict of name -> (row, col, rowspan, colspan), "
            f"got {layout!r}"
        )
    cells: dict[str, Cell] = {}
    limit = MAX_LAYOUT_CELLS
    for name, cell in layout.items():
        check_name(name, "plot name")
        if not isinstance(cell, Sequence) or isinstance(cell, str) or len(cell) != 4:
            raise ArgumentError(
                f"layout[{name!r}] must be (row, col, rowspan, colspan), got {cell!r}"
            )
        row, col = (check_int(v, f"layout[{name!r}] row/col", 0, limit - 1) for v in cell[:2])
        rows = check_int(cell[2], f"layout[{name!r}] rowspan", 1, limit - row)
        cols = check_int(cell[3], f"layout[{name!r}] colspan", 1, limit - col)
        for other, (r, c, rs, cs) in cells.items():
            if _overlap((row, col, rows, cols), (r, c, rs, cs)):
                raise ArgumentError(
                    f"layout cells of {other!r} and {name!r} overlap at row "
                    f"{max(row, r)}, column {max(col, c)}"
                )
        cells[name] = (row, col, rows, cols)
    return cells


def merge_layout(old: Mapping[str, Cell], new: Mapping[str, Cell]) -> dict[str, Cell]:
    """``new``'s cells, and those of ``old`` that overlap none of them."""
    kept = {
        name: cell
        for name, cell in old.items()
        if name not in new and not any(_overlap(cell, other) for other in new.values())
    }
    return {**kept, **new}


def _overlap(a: Cell, b: Cell) -> bool:
    """Whether two cells (row, col, rowspan, colspan) share a grid square."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def check_in_layout(name: str, cells: Mapping[str, Cell] | None) -> None:
    """Raise UnknownPlot unless ``name`` is a plot of the layout."""
    if not isinstance(name, str):
        raise ArgumentError(f"plot name must be a str, got {name!r}")
    if cells is None:
        raise UnknownPlot(
            f"plot {name!r} has no place yet: call set_layout({{{name!r}: (row, col, 1, 1), ...}}) "
            "before plotting"
        )
    if name not in cells:
        close = difflib.get_close_matches(name, list(cells), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownPlot(
            f"plot {name!r} is not in the layout {sorted(cells)}{hint}: "
            "add it with set_layout or use one of those names"
        )
