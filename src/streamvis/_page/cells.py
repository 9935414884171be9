"""How a page lays its runs' plots out in cells of figures (mixed into the page's session).

A plot is known by its key: its name for the page's first run, ``name@run`` for the others
(``@`` is in no plot's name). Beside other runs, a cell's line plots overlay in one figure
(each run's lines in a dash of its own, named in the legend); other plots are a panel per
run, with linked ranges, and a run without the plot says so in its panel.
"""

from __future__ import annotations

import functools
import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from bokeh.layouts import row
from bokeh.models import ColumnDataSource, CustomJSTransform, DataRange1d, GridBox
from bokeh.models.annotations import BoxAnnotation, Span
from bokeh.models.widgets import Div, Select, Slider, Toggle

from .._clock import AT_STEP, XMap
from .._pageclock import PageClock
from .._plots.smoothing import smoothings_of
from .._plotstate import PlotState
from .._specs import Cell
from .._state import RunState
from .drawing import off_loop
from .figures import (
    CELL_HEIGHT,
    CELL_WIDTH,
    Among,
    log_y,
    make_figure,
    move_transform,
    x_transform,
)
from .history import PastPlots
from .lines import NonFinite, Smoothing
from .shows import Image, Page, follow, lines_data, page_data, show_of
from .timeline import Timeline
from .views import PlotView

__all__ = ["REMAP_SECONDS", "Cells"]

REMAP_SECONDS = 2.0  # a run's lines by wall time are drawn anew this often, at most


class Cells:
    """The figures of a page's cells, and each plot's view (by key): built, replaced, and
    marked at the page's step."""

    run: str  # the page's first run
    runs: tuple[str, ...]
    _lookup: Callable[[str], RunState | None]
    _views: dict[str, PlotView]
    _cursors: dict[str, tuple[Span, BoxAnnotation | None, str]]  # line plots' step marks, run
    _maps: dict[str, _Map]  # each run's line plots' x, by run
    _cells: dict[str, tuple[Any, Cell]]  # what each cell shows, by plot name
    _bad: dict[str, NonFinite]  # line plots' NaN and inf values
    _smooth: dict[str, Smoothing]  # line plots' smoothed lines
    _pasts: dict[str, PastPlots]
    _timeline: Timeline
    _grid: GridBox | None
    _gpu: bool
    _log: Toggle
    _smoothing: Slider
    _x: Select  # what line plots' x is (viewed.X_AXES)

    clock: PageClock  # the session's
    notify: Callable[[set[str]], None]
    call_soon: Callable[[Callable[[], None]], None]

    def _key(self, run: str, name: str) -> str:
        """The key of ``run``'s plot ``name`` on this page."""
        return name if run == self.run else f"{name}@{run}"

    def _split(self, key: str) -> tuple[str, str]:
        """The run and plot name of a ``key``."""
        name, _, run = key.partition("@")
        return run or self.run, name

    def _plot(self, key: str) -> tuple[str, RunState | None, str]:
        """The run, its state (None: nothing yet) and the plot name of ``key``."""
        run, name = self._split(key)
        return run, self._lookup(run), name

    def _log_lines(self, fig: Any = None, plot: PlotState | None = None) -> None:
        """Draw the line plots' y axes (or ``fig``'s, of ``plot``) as the log toggle says
        (off: as their fig_kwargs say)."""
        figures = [(fig, plot)] if fig is not None else []
        for key, view in self._views.items() if fig is None else ():
            _, state, name = self._plot(key)
            figures.append((view.figure, state.plots.get(name) if state is not None else None))
        for figure, shown in figures:
            if shown is not None and shown.spec.kind == "tandem_lines":
                log_y(figure, self._log.active or shown.fig_kwargs.get("y_axis_type") == "log")

    def _xmap(self, run: str) -> XMap:
        """Where ``run``'s line plots draw their steps, as the page's x says: at the step,
        the steps since the run's first, or the seconds since its start."""
        state, x = self._lookup(run), self._x.value
        if state is not None and x == "since" and state.steps is not None:
            return XMap.shifted(float(state.steps[0]))
        if state is not None and x == "time" and state.times is not None:
            return XMap.by_time(state.clock, state.times[0])
        return AT_STEP

    def _among(self, run: str, panels: int = 1) -> Among:
        """``run`` among the page's runs, its line plots' steps drawn as the page's x says
        (one transform for all its figures); a page of one run names no run. A map that
        moves nothing yet (a run with no data) is not kept: its data's figures ask again."""
        drawn = self._maps.get(run)
        if drawn is None:
            xmap, state = self._xmap(run), self._lookup(run)
            version = state.clock.version if state is not None else -1
            drawn = _Map(xmap, x_transform(xmap, run), version, time.monotonic())
            if not xmap.identity or self._x.value == "step":
                self._maps[run] = drawn
        named = len(self.runs) > 1
        return Among(run, self.runs.index(run), panels, named, drawn.xmap, drawn.transform)

    def _remap(self) -> None:
        """Draw the runs' line plots by wall time anew as their clocks grew (at most every
        REMAP_SECONDS a run: moving a transform recomputes every x drawn through it)."""
        now = time.monotonic()
        for run, drawn in list(self._maps.items()):
            state, transform = self._lookup(run), drawn.transform
            if transform is None or state is None or self._x.value != "time":
                continue
            if state.clock.version == drawn.version:
                continue
            if now < drawn.when + REMAP_SECONDS:  # come back then, if nothing else comes
                keys = (key for key, (_, _, of) in self._cursors.items() if of == run)
                if (key := next(keys, None)) is not None:
                    self.clock.defer(key, drawn.when + REMAP_SECONDS - now, now)
                continue
            xmap = self._xmap(run)
            move_transform(transform, xmap)
            self._maps[run] = _Map(xmap, transform, state.clock.version, now)
            for key, view in self._views.items():
                if self._split(key)[0] == run:
                    view.x_map = xmap
                    start, end = view.figure.x_range.start, view.figure.x_range.end
                    if view.window is not None and isinstance(start, int | float):
                        view.window = (xmap.step(float(start)), xmap.step(float(end)))

    def _smoothed(self) -> None:
        """The person moved the smoothing slider: draw every line plot so smoothed."""
        self.notify({key for key in self._views if key in self._smooth})

    def _smoothen(self, key: str, plot: PlotState) -> bool:
        """Bring the smoothed lines of plot ``key`` up to the slider's weight (as the person
        let go of it) and the plot's rows; whether it sent anything. Many rows are smoothed
        off the loop first (the page is updated once they are)."""
        weight = round(min(max(float(self._smoothing.value_throttled or 0), 0.0), 0.999), 3)
        smoothing = self._smooth[key]
        if weight == 0:
            sent = smoothing.shown is not None
            smoothing.show(None)
            return sent
        done = functools.partial(self.call_soon, functools.partial(self.notify, {key}))
        smoothed, work = smoothings_of(plot).at(weight, plot.data, done)
        if work is not None:
            off_loop(work, lambda _: None, self.call_soon)
        shown = (id(smoothed), smoothed.rows)
        if smoothed.busy or smoothing.shown == shown:
            return False
        smoothing.show(lines_data(plot, smoothed.columns()), shown)
        return True

    def _mark(self, step: int | None) -> None:
        """Mark ``step`` on the line plots (None: live, or by time: none)."""
        marked = step is not None and not self._timeline.by_time  # by time: no step to mark
        for span, after, run in self._cursors.values():
            at = self._maps.get(run, _Map()).xmap.at(step) if step is not None and marked else 0
            span.update(location=at, visible=marked)
            if after is not None:
                after.update(left=at, visible=marked)

    def _replace_cell(self, name: str) -> None:
        """Build the cell of plot ``name`` again (every run's figure of it, as it shows
        now), in the old one's place: its figures' configuration changed."""
        old = self._cells.get(name)
        if old is None or self._grid is None:
            return
        child, cell = old
        costs = {}
        for run in self.runs:
            key = self._key(run, name)
            view = self._views.pop(key, None)
            if view is not None:
                costs[key] = view.cost
                view.retire()
            span, after, _ = self._cursors.pop(key, (None, None, ""))
            for mark in (span, after):
                if mark is not None:
                    mark.name = None
            self._bad.pop(key, None)
            self._smooth.pop(key, None)
        for panel in getattr(child, "children", ()):  # names stay unique: a panel's too
            panel.name = None
        drawing: set[str] = set()
        new = self._cell(name, cell, drawing)
        for key, cost in costs.items():
            if key in self._views:
                self._views[key].cost = cost
        self._grid.children = [
            (new, *cell) if c[0] is child else c for c in cast(list[Any], self._grid.children)
        ]
        self._cells[name] = (new, cell)
        smoothing = {k for k in self._smooth if self._split(k)[1] == name}
        self.notify(drawing | (smoothing if self._smoothing.value_throttled else set()))

    def _figure(
        self, key: str, cell: Any, plot: PlotState | None, among: Among | None, on: Any = None
    ) -> tuple[Any, Any]:
        """A new figure of ``plot`` (or its lines drawn ``on`` another run's), with its data;
        a line plot's figure marks the step shown, the rest of its curves faint (overlays:
        moving them repaints no line)."""
        data = page_data(plot) if plot is not None else None
        fig, source = make_figure(key, cell, plot, data, self._gpu, among, on)
        if plot is not None and plot.spec.kind == "tandem_lines":
            self._log_lines(fig, plot)
            self._bad[key] = NonFinite(fig, among)
            self._smooth[key] = Smoothing(fig, key)
            step = None if self._timeline.by_time else self._timeline.cursor
            run = among.run if among is not None else self.run
            at = among.xmap.at(step) if step is not None and among is not None else step or 0
            span = Span(
                location=at, dimension="height", visible=step is not None,
                line_dash="dashed", line_color="#555555", name=f"{key}:cursor", level="overlay",
            )  # fmt: skip
            after = None if on is not None else BoxAnnotation(  # faint: after the first run's
                left=at, visible=step is not None, fill_color="white", fill_alpha=0.7,
                line_alpha=0, name=f"{key}:after", level="overlay", editable=False,
            )  # fmt: skip
            if after is not None:
                fig.add_layout(after)
            fig.add_layout(span)
            self._cursors[key] = (span, after, run)
        return fig, source

    def _new_view(
        self, name: str, fig: Any, source: ColumnDataSource | None, plot: PlotState | None
    ) -> PlotView:
        """A view of a new figure, which tells the server what its representation needs."""
        view = PlotView(fig, source)
        follow(cast(Page, self), name, view, plot)  # a Page: the session
        return view

    def _place(
        self,
        run: str,
        name: str,
        cell: Any,
        drawing: set[str],
        among: Among | None = None,
        on: Any = None,
        share: Any = None,
    ) -> Any:
        """Make the figure of ``run``'s plot ``name`` (or draw it ``on`` another's, or with
        ranges linked to the figure it ``share``s) and its view; images to draw go in
        ``drawing``. Returns the figure."""
        key, state = self._key(run, name), self._lookup(run)
        live = state.plots.get(name) if state is not None else None
        plot = live and (self._pasts[run].at(name, live, self._timeline.cursor) or live)
        fig, source = self._figure(key, cell, plot, among, on)
        if share is not None:
            _link(fig, share)
        view = self._new_view(key, fig, source, plot)
        view.x_map = among.xmap if among is not None else AT_STEP
        if plot is not None:
            show = show_of(plot)
            view.caught_up(plot, show.first(view, plot), 0.0)
            if isinstance(show, Image):
                drawing.add(key)
        self._views[key] = view
        return fig

    def _cell(self, name: str, cell: Cell, drawing: set[str]) -> Any:
        """What a cell shows of plot ``name``: its figure; beside other runs, their line
        plots overlaid in one figure, or else a panel per run with linked ranges (a run
        without the plot says so in its panel)."""
        if len(self.runs) == 1:
            alone = None if self._x.value == "step" else self._among(self.run)
            return self._place(self.run, name, cell, drawing, alone)
        states = {run: self._lookup(run) for run in self.runs}
        having = [r for r, s in states.items() if s is not None and s.cells and name in s.cells]
        lacking = [run for run in self.runs if run not in having]
        plots = [s.plots.get(name) for s in states.values() if s is not None]
        if any(plot is not None and plot.spec.kind == "tandem_lines" for plot in plots):
            fig: Any = None
            for run in having:
                among = self._among(run)
                fig = self._place(run, name, cell, drawing, among, on=fig)
            if lacking:
                fig.title.text += f" (no {name} in run {', '.join(lacking)})"
            return fig
        panels: list[Any] = []
        width, height = CELL_WIDTH * cell[3] // len(self.runs), CELL_HEIGHT * cell[2]
        for run in self.runs:
            if run in lacking:
                text = (
                    f"<p>Run <b>{html.escape(run)}</b> has no plot <b>{html.escape(name)}</b>.</p>"
                )
                missing = f"{self._key(run, name)}:missing"
                panels.append(Div(text=text, width=width, height=height, name=missing))
                continue
            share = next((p for p in panels if not isinstance(p, Div)), None)
            among = self._among(run, len(self.runs))
            panels.append(self._place(run, name, cell, drawing, among, share=share))
        return row(*panels)


@dataclass(frozen=True)
class _Map:
    """Where a run's line plots draw their steps on a page: the map, the page's transform
    of it (None: at the step), and the run's clock version and the time it was made at."""

    xmap: XMap = AT_STEP
    transform: CustomJSTransform | None = None
    version: int = -1
    when: float = 0.0


def _link(fig: Any, shared: Any) -> None:
    """Give ``fig`` the ranges of ``shared`` (zoom one, all follow), autoranging over both
    figures' glyphs (an image's: its bounds), and synced if either's were (images are
    drawn for them)."""
    for attr in ("x_range", "y_range"):
        mine, theirs = getattr(fig, attr), getattr(shared, attr)
        if isinstance(mine, DataRange1d) and isinstance(theirs, DataRange1d):
            if mine.renderers or theirs.renderers:
                theirs.renderers = [
                    *(theirs.renderers or shared.renderers),
                    *(mine.renderers or fig.renderers),
                ]
            theirs.syncable = theirs.syncable or mine.syncable
        setattr(fig, attr, theirs)
