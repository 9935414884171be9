"""Bokeh figures and glyphs for each plot kind (server side only)."""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bokeh.models import (
    BasicTicker,
    BasicTickFormatter,
    CDSView,
    ColumnDataSource,
    CustomJSTransform,
    DataRange1d,
    HoverTool,
    IndexFilter,
    LinearScale,
    LogScale,
    LogTicker,
    LogTickFormatter,
)
from bokeh.plotting import figure
from bokeh.transform import linear_cmap

from .._clock import AT_STEP, XMap
from .._errors import ArgumentError
from .._plots.raster import (
    MARKER_ALPHA,
    MARKER_SIZE,
)
from .._plotstate import PlotState
from .._specs import Cell, resolve_palette, sample_palette

__all__ = [
    "CELL_HEIGHT",
    "CELL_WIDTH",
    "DEFAULT_COLOR",
    "FIG_KWARGS",
    "LINE_WIDTH",
    "WEBGL_POINTS",
    "Among",
    "check_fig_kwargs",
    "log_y",
    "make_figure",
    "move_transform",
    "shifted_x",
    "wants_webgl",
    "x_transform",
]

CELL_WIDTH, CELL_HEIGHT = 440, 340
LINE_WIDTH = 1  # wider lines take 2.5x as long to rasterize in a canvas drawn without a GPU
# WebGL pays a full-canvas copy per renderer on every paint: worth it for many points only,
# and only on a GPU (software WebGL paints 41k markers in ~0.9 s where a canvas takes ~0.15 s).
WEBGL_POINTS = 5000
DEFAULT_COLOR = "#1f77b4"


_DASHES = ("solid", "dashed", "dotted", "dotdash", "dashdot")  # runs' lines, in the page's order


@dataclass(frozen=True)
class Among:
    """A run's plot on a page comparing runs (or drawing a run's lines by another x): the
    run, its place among the page's runs (its lines' dash), how many panels share its cell
    (1: the runs' lines overlay), whether its lines are ``named`` by the run, and where
    its line plots' steps are drawn (``xmap``, through the page's ``transform`` of it)."""

    run: str
    index: int
    panels: int = 1
    named: bool = True
    xmap: XMap = AT_STEP
    transform: CustomJSTransform | None = None  # one per run and page: it moves as the run

    @property
    def dash(self) -> str:
        """Its lines' dash."""
        return _DASHES[self.index % len(_DASHES)]

    @property
    def label(self) -> str | None:
        """What its lines are named by: the run, if it is named."""
        return self.run if self.named else None

    def x(self, column: str) -> Any:
        """A line glyph's x: ``column``, drawn where the page's map puts its steps (its
        data, and so what the server sends, stay as they are)."""
        return column if self.transform is None else {"field": column, "transform": self.transform}


def x_transform(xmap: XMap, run: str) -> CustomJSTransform | None:
    """The page's transform of a run's steps to where ``xmap`` draws them (None: as they are)."""
    if xmap.identity:
        return None
    return CustomJSTransform(args=_map_args(xmap), func=_MAP_JS + "return at(x)",
                             v_func=_MAP_JS + _MAP_ALL_JS, tags=[f"streamvis:x:{run}"])  # fmt: skip


def move_transform(transform: CustomJSTransform, xmap: XMap) -> None:
    """Draw the steps anew as ``xmap`` maps them (the run went on, its map grew)."""
    transform.args = _map_args(xmap)


def _map_args(xmap: XMap) -> dict[str, Any]:
    return {"s": list(xmap.steps), "t": list(xmap.shown)}


def shifted_x(among: Among | None, column: str) -> Any:
    """A line glyph's x: ``column``, mapped as ``among`` says, if given."""
    return among.x(column) if among is not None else column


# A step x mapped by the lines through the table's nearest rows (s: steps, t: where they are
# drawn), as XMap.at computes it; flat x (marks) or a list of them (lines).
_MAP_JS = """
const n = s.length;
const at = (x) => {
  if (n === 1) return t[0];
  let lo = 0, hi = n - 1;
  if (x < s[0]) hi = 1; else if (x >= s[n - 1]) lo = n - 2;
  else while (hi - lo > 1) { const m = (lo + hi) >> 1; if (s[m] <= x) lo = m; else hi = m; }
  const dx = s[hi] - s[lo];
  return dx ? t[lo] + (x - s[lo]) * (t[hi] - t[lo]) / dx : t[lo];
};
"""
_MAP_ALL_JS = "return xs.map((x) => typeof x === 'number' ? at(x) : x.map(at))"


# The figure() keywords a client may set: what is drawn on the canvas, or sizes and places it.
# Keywords that reach the page's DOM as HTML, CSS or script (attribution, html_attributes,
# stylesheets, styles, css_classes, js_*_callbacks, a tooltips template, ...) are refused: a
# run's fig_kwargs are shown to everyone who opens its page.
FIG_KWARGS = frozenset(
    {
        # figure()'s own options
        *("x_range", "y_range", "x_axis_type", "y_axis_type", "x_axis_location"),
        *("y_axis_location", "x_axis_label", "y_axis_label", "x_minor_ticks", "y_minor_ticks"),
        *("tools", "tooltips", "active_drag", "active_inspect", "active_scroll", "active_tap"),
        "active_multi",
        # Plot properties of plain values: text drawn on the canvas, sizes, colors, flags
        *("title", "title_location", "toolbar_location", "toolbar_sticky", "toolbar_inner"),
        *("width", "height", "min_width", "min_height", "max_width", "max_height"),
        *("frame_width", "frame_height", "sizing_mode", "width_policy", "height_policy"),
        *("aspect_ratio", "aspect_scale", "match_aspect", "margin", "align", "min_border"),
        *("min_border_left", "min_border_right", "min_border_top", "min_border_bottom"),
        *("background_fill_color", "background_fill_alpha", "border_fill_color"),
        *("border_fill_alpha", "outline_line_color", "outline_line_alpha"),
        *("outline_line_width", "outline_line_dash", "hidpi", "output_backend"),
        *("lod_threshold", "lod_factor", "lod_interval", "lod_timeout", "reset_policy"),
    }
)
_SAFE_FORMAT = re.compile(r"\{\s*safe\s*\}")  # a placeholder format that inserts raw HTML


def _refused(fig_kwargs: Mapping[str, Any]) -> str | None:
    """Why ``fig_kwargs`` cannot reach a page (None if they can)."""
    for name, value in fig_kwargs.items():
        if name not in FIG_KWARGS:
            close = difflib.get_close_matches(name, sorted(FIG_KWARGS), n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            return (
                f"figure() keyword {name!r} is not accepted{hint} (fig_kwargs may set what is "
                "drawn on the canvas: titles, labels, axis types, ranges, sizes, tools, colors; "
                "not what a page renders as HTML, CSS or script)"
            )
        if name == "tooltips" and not _plain_tooltips(value):
            return (
                f"tooltips {value!r} are refused: give a list of (label, value) pairs such as "
                "[('step', '$x'), ('loss', '@y{0.000}')]; an HTML template or a '{safe}' "
                "format would run as HTML in every viewer's page"
            )
    return None


def _plain_tooltips(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(
        isinstance(pair, list | tuple)
        and len(pair) == 2
        and all(isinstance(text, str) for text in pair)
        and not _SAFE_FORMAT.search(pair[1])
        for pair in value
    )


def _safe(fig_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``fig_kwargs`` as they may reach a page: refused keywords dropped (a log written by an
    older server may hold some), tooltip values escaped (Bokeh parses them as HTML)."""
    safe = {k: v for k, v in fig_kwargs.items() if k in FIG_KWARGS and k != "tooltips"}
    tooltips = fig_kwargs.get("tooltips")
    if tooltips is not None and _plain_tooltips(tooltips):
        safe["tooltips"] = [(label, html.escape(value, quote=False)) for label, value in tooltips]
    return safe


_UNEXPECTED = re.compile(
    r"unexpected attribute '([^']+)' to figure, possible attributes are (.*)", re.S
)


def _defaults(name: str, cell: Cell, among: Among | None = None) -> dict[str, Any]:
    """Our figure options; ``name`` (``plot@run`` beside other runs) names its models."""
    plot = name.partition("@")[0]
    return {
        "title": f"{plot} · {among.run}" if among is not None and among.panels > 1 else plot,
        "name": f"{name}:figure",
        "width": CELL_WIDTH * cell[3] // (among.panels if among is not None else 1),
        "height": CELL_HEIGHT * cell[2],
        "tools": "pan,wheel_zoom,box_zoom,reset,save",
        "active_scroll": "wheel_zoom",
    }


def _options(
    name: str, cell: Cell, fig_kwargs: Mapping[str, Any], among: Among | None = None
) -> dict[str, Any]:
    """Our defaults under the user's fig_kwargs; scroll zooms only if the tools include it."""
    options = {**_defaults(name, cell, among), **_safe(fig_kwargs)}
    if "active_scroll" not in fig_kwargs and "wheel_zoom" not in str(options["tools"]):
        del options["active_scroll"]
    return options


def check_fig_kwargs(fig_kwargs: Mapping[str, Any]) -> None:
    """Raise ArgumentError if ``fig_kwargs`` may not reach a page, or Bokeh's ``figure``
    refuses them (unknown name or value)."""
    refused = _refused(fig_kwargs)
    if refused is not None:
        raise ArgumentError(refused)
    try:
        figure(**_options("check", (0, 0, 1, 1), fig_kwargs))
    except AttributeError as exc:
        found = _UNEXPECTED.search(str(exc))
        if found is None:
            raise ArgumentError(str(exc)) from exc
        name, known = found.group(1), re.split(r", | or ", found.group(2))
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ArgumentError(f"figure() has no keyword {name!r}{hint}") from exc
    except ValueError as exc:  # Bokeh's property validation
        raise ArgumentError(str(exc).split("\n")[0]) from exc


def wants_webgl(plot: PlotState | None) -> bool:
    """Whether ``plot`` has enough points for WebGL to pay off on a page with a GPU."""
    return (
        plot is not None
        and plot.spec.kind != "tandem_lines"
        and plot.points >= WEBGL_POINTS
        and not plot.rasterized
    )


def make_figure(
    name: str,
    cell: Cell,
    plot: PlotState | None,
    data: dict[str, Any] | None,
    gpu: bool = False,
    among: Among | None = None,
    on: Any = None,
    points: bool = False,
) -> tuple[Any, ColumnDataSource | None]:
    """A figure for plot ``name`` in ``cell``, with glyphs and a source of ``data`` (what
    :func:`shows.page_data` makes) if it has any; or those glyphs drawn ``on`` a figure of
    another run's lines, ``among`` the runs of a page comparing them.

    ``gpu`` says the page has hardware WebGL, used then for plots with many points;
    ``points``, that the data are points even where a page would show an image.
    """
    raster = plot is not None and plot.rasterized and not points
    fig = on
    if fig is None:
        backend = {"output_backend": "webgl" if gpu and wants_webgl(plot) else "canvas"}
        fig = figure(**{**backend, **_options(name, cell, plot.fig_kwargs if plot else {}, among)})
        # The page's auto ranges change on every update; only a line plot's x range is
        # needed here (to summarize the rows outside it), and an image's ranges (to draw it
        # for them), so the others don't travel back to the server.
        fig.y_range.syncable = raster
        fig.x_range.syncable = raster or (plot is not None and plot.spec.kind == "tandem_lines")
        if among is not None and plot is not None and _names_x(among, plot):
            fig.xaxis.axis_label = among.xmap.along
    if plot is None or data is None:
        return fig, None
    source = ColumnDataSource(data=data, name=name)
    spec = plot.spec
    color: Any = DEFAULT_COLOR
    if spec.color is not None:
        color = linear_cmap("c", resolve_palette(spec.color.palette), 0, max(plot.levels - 1, 1))
    if raster:
        # The auto ranges follow the data's bounds, not the image (drawn for the ranges).
        bounds = fig.quad(
            left="left", right="right", bottom="bottom", top="top", source=source, visible=False
        )
        fig.image_rgba(image="image", x="x", y="y", dw="dw", dh="dh", source=source)
        for axis_range in (fig.x_range, fig.y_range):
            if isinstance(axis_range, DataRange1d):
                axis_range.renderers = [bounds]
    elif spec.kind == "scatter":
        fig.scatter(
            "x",
            "y",
            source=source,
            size=MARKER_SIZE,
            fill_color=color,
            line_color=None,
            fill_alpha=MARKER_ALPHA,
        )
    elif spec.kind == "multi_lines":
        fig.segment("x0", "y0", "x1", "y1", source=source, line_color=color, line_width=LINE_WIDTH)
    else:
        _lines(fig, name, source, plot, among)
    return fig, source


def _names_x(among: Among, plot: PlotState) -> bool:
    """Whether a figure's x axis says what its x is: a line plot drawn by another x than the
    step, unless its fig_kwargs label the axis."""
    kind, labelled = plot.spec.kind, "x_axis_label" in plot.fig_kwargs
    return among.xmap.along != "step" and kind == "tandem_lines" and not labelled


def _lines(
    fig: Any, name: str, source: ColumnDataSource, plot: PlotState, among: Among | None
) -> None:
    """A line plot's glyphs: one multi-line, or with labels one per line, named in a legend
    whose entries hide their line when clicked; hover names the line and its nearest point
    (unless the plot's fig_kwargs give tooltips of their own). ``among`` other runs, the
    lines have the run's dash and are named by it (the legend and the figure's one hover
    say it). Renderers are tagged ``NAME:line``, for :class:`Smoothing`."""
    colors = sample_palette(resolve_palette(plot.spec.palette or "Viridis256"), plot.lines)
    style = dict(
        line_color=linear_cmap("c", colors, 0, max(plot.lines - 1, 1)), line_width=LINE_WIDTH,
        line_dash=among.dash if among is not None else "solid",
    )  # fmt: skip
    labels, run = plot.spec.labels, among.label if among is not None else None
    if labels is None:  # one glyph for every line (None: no filter)
        lines: list[tuple[int | None, dict[str, str]]] = [
            (None, {} if run is None else {"legend_label": run})
        ]
    else:
        lines = [
            (k, {"legend_label": label if run is None else f"{run} · {label}"})
            for k, label in enumerate(labels)
        ]
    renderers, x = [], shifted_x(among, "xs")
    for k, named in lines:
        view = {} if k is None else {"view": CDSView(filter=IndexFilter(indices=[k]))}
        line = fig.multi_line(x, "ys", source=source, name=run or f"{name}:line", **view, **named,
                              **style)  # fmt: skip
        line.tags = [f"{name}:line"]  # (the glyph methods give tags to the glyph)
        renderers.append(line)
    if labels is not None or run is not None:
        fig.legend.update(click_policy="hide", location="top_left", label_text_font_size="8pt")
    if "tooltips" in plot.fig_kwargs:
        return
    # One hover for all the runs' lines of a figure: one per run cost a page of ten runs
    # more than half its paints, with no mouse over it.
    hover = next((t for t in fig.toolbar.tools if "streamvis:hover" in t.tags), None)
    if hover is not None:
        hover.renderers = [*hover.renderers, *renderers]
        return
    along = among.xmap.along if among is not None else "step"
    tips = [("line", "@label"), (along, "$snap_x{0,0.[000]}"), ("value", "$snap_y")]
    tips = tips if run is None else [("run", "$name"), *tips]
    fig.add_tools(HoverTool(renderers=renderers, tooltips=tips, line_policy="nearest",
                            tags=["streamvis:hover"]))  # fmt: skip


def log_y(fig: Any, log: bool) -> None:
    """Draw ``fig``'s y axis on a log scale (or back on a linear one): new scale, ticker and
    formatter models go to the page; its data stays as it is."""
    if isinstance(fig.y_scale, LogScale) == log:
        return
    fig.y_scale = LogScale() if log else LinearScale()
    for axis in fig.yaxis:
        axis.update(ticker=LogTicker() if log else BasicTicker())
        axis.formatter = LogTickFormatter() if log else BasicTickFormatter()
    for grid in fig.ygrid:
        grid.ticker = fig.yaxis[0].ticker
