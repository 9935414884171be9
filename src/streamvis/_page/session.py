"""One browser document following one run's state, updated in batches on its own ticks.

The ingest side only calls :meth:`DocumentView.notify`, which schedules an update through
the document's own callbacks (the one safe way in from outside the document lock). The
update sends each plot the difference since the last one: a ``stream`` of the new rows for
appends, one ``data`` assignment for the latest replace. A line plot's page source holds a
row per line, so its new rows come as one ``data`` assignment of all of them (a summary
once there are too many). A scatter or line plot of many points is an image drawn for the
page's ranges and pixel size, which the page sends back; it is drawn again when they or the
data change.

Updates go out one at a time: each ends by ticking a hidden clock model, and the page
echoes the tick back from the animation frame that paints it (saying too whether its WebGL
runs on a GPU). Until then (or ``ACK_TIMEOUT``) changes only accumulate, so a slow browser
gets fewer, larger updates instead of a growing queue; large replaces are spaced by how
long the updates carrying them took, so the small plots beside them stay live.
"""

from __future__ import annotations

import functools
import html
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from bokeh.document import Document
from bokeh.events import DocumentReady
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, CustomJS, GridBox
from bokeh.models.annotations import BoxAnnotation, Span
from bokeh.models.widgets import Div, Toggle

from .._history import Stored
from .._pageclock import PageClock
from .._plotstate import PlotState
from .._state import RunState
from .drawing import off_loop
from .figures import NonFinite, log_y, make_figure, wants_webgl
from .history import AHEAD, PastPlots
from .scripts import ECHO_JS, HOLD_JS, READY_JS
from .shows import Image, PlotView, follow, is_large, page_data, predrawer, show_of
from .timeline import Timeline
from .viewed import Viewed

__all__ = ["DocumentView"]

log = logging.getLogger("streamvis.page")


class DocumentView:
    """Shows what ``viewed`` asks for in ``doc``; ``lookup`` returns a run's current state
    (or None)."""

    def __init__(
        self,
        doc: Document,
        viewed: Viewed,
        lookup: Callable[[str], RunState | None],
        runs: Callable[[], list[str]],
        interval: float,
        reading: Callable[[], bool] = lambda: False,
        keep_image: Callable[[str, str], None] = lambda run, plot: None,
        history: Callable[[str, str, int | float], Stored | None] | None = None,
    ) -> None:
        self.doc, self.viewed, self.interval = doc, viewed, interval
        self.run = viewed.run
        self._reading = reading
        self._keep_image = keep_image  # store a plot's last image (slow to draw) for restarts
        self._lookup, self._runs = lookup, runs
        self._views: dict[str, PlotView] = {}
        self._grid: GridBox | None = None
        self.clock = PageClock(interval)
        self._scheduled: Any = None  # the pending callback, if any...
        self._scheduled_at = 0.0  # ...and when it runs
        self._gpu = False  # the page has hardware WebGL (known from its first echo)
        self._clock = Div(name="streamvis:clock", visible=False, tags=[0], text="0")
        self._clock.js_on_change("tags", CustomJS(args=dict(clock=self._clock), code=ECHO_JS))
        self._clock.on_change("text", self._on_echo)
        doc.js_on_event(DocumentReady, CustomJS(args=dict(clock=self._clock), code=READY_JS))
        self._hold = Div(name="streamvis:hold", visible=False, tags=[])  # paint a step at once
        self._hold.js_on_change("tags", CustomJS(args=dict(hold=self._hold), code=HOLD_JS))
        self._timeline = Timeline(viewed.step, self._moved, viewed.time)
        doc.js_on_event(DocumentReady, self._timeline.keys)
        read = functools.partial(history, self.run) if history is not None else None
        drawer = lambda name: predrawer(self._views.get(name))  # noqa: E731
        submit = functools.partial(off_loop, call_soon=self.call_soon)
        self._past = PastPlots(read, submit, self._read_past, drawer, self._timeline.at)
        self._cursors: dict[str, tuple[Span, BoxAnnotation]] = {}  # line plots' step marks
        self._bad: dict[str, NonFinite] = {}  # line plots' NaN and inf values
        self._log = Toggle(label="log y", name="streamvis:log", width=60)  # the line plots'
        self._log.on_change("active", lambda attr, old, new: self._log_lines())
        self._rebuild()

    def _moved(self, step: int | None) -> None:
        """The person moved the time control: show every plot at ``step`` (None: live), in
        one update once what it needs is read (the page has nothing to do meanwhile)."""
        state = self._lookup(self.run)
        reading = False
        if state is not None:  # read (and draw) the step now, not at the next update's tick:
            shown = [self._shown(state, name) for name in self._views if name in state.plots]
            reading = None in shown  # scrub p50 84-97 ms this way, 107-111 ms without
            self._past.start()
            if step is not None:
                self._take_images(set(self._views), step)  # of plots read ahead, if any
        self.clock.hurry()
        if not reading:  # else the read, once done, shows the step
            self.notify(set(self._views))

    def _log_lines(self, fig: Any = None, plot: PlotState | None = None) -> None:
        """Draw the line plots' y axes (or ``fig``'s, of ``plot``) as the log toggle says
        (off: as their fig_kwargs say)."""
        state = self._lookup(self.run)
        figures = [(fig, plot)] if fig is not None else [
            (view.figure, state.plots.get(name)) for name, view in self._views.items() if state
        ]  # fmt: skip
        for figure, shown in figures:
            if shown is not None and shown.spec.kind == "tandem_lines":
                log_y(figure, self._log.active or shown.fig_kwargs.get("y_axis_type") == "log")

    def _mark(self, step: int | None) -> None:
        """Mark ``step`` on the line plots (None: live, or by time: none)."""
        marked = step is not None and not self._timeline.by_time  # by time: no step to mark
        for span, after in self._cursors.values():
            span.update(location=step if marked else 0, visible=marked)
            after.update(left=step if marked else 0, visible=marked)

    def _read_past(self, names: set[str], step: int) -> None:
        """Plots were read at ``step`` (and images of them drawn): show them, if the page
        is there (else they wait, read ahead)."""
        if step != self._timeline.cursor:
            return
        self._take_images(names, step)
        self.clock.hurry()  # a step the person asked for: show it as soon as it is read
        self.notify(set(self._views))  # with the plots it needed no read for

    def _take_images(self, names: set[str], step: int) -> None:
        """Show the images drawn of plots as they were read at ``step``."""
        for name in names:
            view = self._views.get(name)
            if view is not None and view.drawing is None:
                image = self._past.image(name, step)
                if image is not None:
                    view.drawn = image

    def _shown(self, state: RunState, name: str) -> PlotState | None:
        """The plot the page shows at its step (None: not read yet, or no such plot)."""
        live, cursor = state.plots.get(name), self._timeline.cursor
        if live is None:
            return None
        ahead = self._timeline.ahead(cursor, AHEAD) if cursor is not None else []
        return self._past.at(name, live, cursor, ahead)  # playing: the next steps read ahead

    def notify(self, names: set[str]) -> None:
        """Mark plots as changed ('' = the layout); schedule one batched update."""
        self.clock.changed(names)
        self._schedule()

    def _schedule(self) -> None:
        """Make sure an update runs when the clock says the next may go (sooner if one is
        pending for later: a held-back large replace must not hold back the rest)."""
        now = time.monotonic()
        due = self.clock.due(now)
        if due is None:
            return
        if self._scheduled is not None and (self._scheduled_at <= due or not self._unschedule()):
            return
        self._scheduled_at = due
        if due > now:
            self._scheduled = self.doc.add_timeout_callback(
                self._update, int((due - now) * 1000) + 1
            )
        else:
            self._scheduled = self.doc.add_next_tick_callback(self._update)

    def _unschedule(self) -> bool:
        """Cancel the pending update; False if it cannot be (it is running or has run)."""
        try:
            self.doc.remove_timeout_callback(self._scheduled)
        except ValueError:  # it was a next-tick callback, or it already ran
            return False
        self._scheduled = None
        return True

    def _on_echo(self, attr: str, old: Any, new: Any) -> None:
        """The page is painting what it was sent ("tick gpu|cpu [ready]"): send what
        accumulated meanwhile."""
        echo = self.clock.echo(str(new), time.monotonic())
        if echo is None:
            return
        for name, cost in echo.costs.items():
            if name in self._views:
                self._views[name].cost = cost
        self._use_gpu(echo.gpu)
        if self._scheduled is not None and echo.caught_up and not self._unschedule():
            return
        self._schedule()

    def _use_gpu(self, gpu: bool) -> None:
        """Rebuild the figures whose backend depends on whether the page has a GPU."""
        if gpu == self._gpu or (state := self._lookup(self.run)) is None:
            return
        self._gpu = gpu
        rebuild = {name for name in self._views if wants_webgl(state.plots.get(name))}
        for name in rebuild:
            self._views[name].version = -1
        self.notify(rebuild)

    def _update(self) -> None:
        self._scheduled = None
        now = time.monotonic()
        dirty = self.clock.begin(now)
        if dirty is not None:
            hold = self._timeline.cursor is not None  # at a step: its plots paint together
            if hold:
                self._hold.tags = [now]
            large = self._send(dirty, now)
            if large is not None:
                self._clock.tags = [self.clock.send(now, large)]  # also releases the hold
            elif hold:
                self._hold.tags = []
        self._schedule()

    def _send(self, dirty: set[str], now: float) -> list[str] | None:
        """Bring the ``dirty`` plots up to date; the large replaces sent, or None if nothing
        was (a large replace that must wait is deferred on the clock)."""
        state = self._lookup(self.run)
        if "" in dirty or state is None:
            self._rebuild()
            return []
        by_time = self._timeline.by_time
        self._timeline.follow(state)
        if by_time != self._timeline.by_time:
            self._past.forget()
        self._mark(self._timeline.cursor)
        changed, large = False, []
        for name in dirty:
            try:
                wait = self._sync(state, name, now)
            except Exception:  # one plot's failure must not stall the others
                log.exception("updating plot %r of run %r failed", name, self.run)
                continue
            if wait is None:
                changed = True
                if is_large(state.plots[name]):
                    large.append(name)
            elif wait > 0:
                self.clock.defer(name, wait, now)
        self._past.start()  # the plots this update could not show yet, at the page's step
        return large if changed else None

    def _sync(self, state: RunState, name: str, now: float) -> float | None:
        """Bring one plot up to date, as its representation does (:mod:`shows`); a plot
        whose figure changed gets a new one first. Returns None if it sent something, 0
        if there was nothing to send, or the seconds after which a large replace may go."""
        plot = self._shown(state, name)
        view = self._views.get(name)
        if plot is None or view is None or state.cells is None:
            return 0
        if view.source is None or view.version != plot.version:
            view = self._replace_figure(state, name, plot)
        wait: float | None = show_of(plot).sync(self, name, view, plot, now)
        if name in self._bad:
            self._bad[name].show(plot)
        return wait

    @property
    def live(self) -> bool:
        """Whether the page follows the newest data (not a step the person chose)."""
        return self._timeline.cursor is None

    def is_current(self, name: str, view: PlotView) -> bool:
        """Whether ``view`` is still the page's figure of plot ``name``."""
        return self._views.get(name) is view

    def keep_image(self, name: str) -> None:
        """Store the plot's last image, slow to draw, for a restarted server to show."""
        if self._timeline.cursor is None:  # of the live plot only
            self._keep_image(self.run, name)

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the document's thread (from any thread)."""
        try:
            self.doc.add_next_tick_callback(callback)
        except Exception:  # the page closed meanwhile
            log.debug("page of run %r closed before a callback could run", self.run)

    def off_loop(self, name: str, view: PlotView, work: Callable[[], Any], keep: bool) -> None:
        """Run ``work`` (drawing an image, reading rows) on the drawing thread, then update
        the plot again; ``keep`` its result for the view, as what it was started for."""
        started = time.monotonic()

        def timed() -> Any:
            try:
                return work()
            finally:
                view.draw_seconds = time.monotonic() - started

        def take(result: Any) -> None:  # on the document's thread
            if self._views.get(name) is not view:
                return  # the figure was replaced meanwhile: new work is under way
            wanted, view.drawing = view.drawing, None
            if isinstance(result, Exception):  # one plot's failure must not stall the page
                log.error("updating plot %r of run %r failed", name, self.run, exc_info=result)
                view.shown = wanted  # not retried
            elif keep:
                view.drawn = (wanted, result)
            self.notify({name})

        off_loop(timed, take, self.call_soon)

    def _replace_figure(self, state: RunState, name: str, plot: PlotState) -> PlotView:
        assert state.cells is not None and self._grid is not None
        cell = state.cells[name]
        fig, source = self._figure(name, cell, plot)
        previous = self._views[name]
        old = previous.retire()
        self._views[name] = self._new_view(name, fig, source, plot)
        self._views[name].cost = previous.cost
        self._grid.children = [
            (fig, *cell) if c[0] is old else c for c in cast(list[Any], self._grid.children)
        ]
        return self._views[name]

    def _figure(self, name: str, cell: Any, plot: PlotState | None) -> tuple[Any, Any]:
        """A new figure of ``plot``, with its data; a line plot's marks the step shown, the
        rest of its curves faint (overlays: moving them repaints no line)."""
        data = page_data(plot) if plot is not None else None
        fig, source = make_figure(name, cell, plot, data, self._gpu)
        if plot is not None and plot.spec.kind == "tandem_lines":
            self._log_lines(fig, plot)
            self._bad[name] = NonFinite(fig)
            step = None if self._timeline.by_time else self._timeline.cursor
            span = Span(
                location=step or 0, dimension="height", visible=step is not None,
                line_dash="dashed", line_color="#555555", name=f"{name}:cursor", level="overlay",
            )  # fmt: skip
            after = BoxAnnotation(
                left=step or 0, visible=step is not None, fill_color="white", fill_alpha=0.7,
                line_alpha=0, name=f"{name}:after", level="overlay", editable=False,
            )  # fmt: skip
            fig.add_layout(after)
            fig.add_layout(span)
            self._cursors[name] = (span, after)
        return fig, source

    def _new_view(
        self, name: str, fig: Any, source: ColumnDataSource | None, plot: PlotState | None
    ) -> PlotView:
        """A view of a new figure, which tells the server what its representation needs."""
        view = PlotView(fig, source)
        follow(self, name, view, plot)
        return view

    def _rebuild(self) -> None:
        state = self._lookup(self.run)
        drawing: set[str] = set()  # images to draw once the page has its figures
        for view in self._views.values():
            view.retire()
        self._views = {}
        self._grid = None
        others = [r for r in self._runs() if r != self.run]
        folded = state.folded if state is not None else 0
        text = self.viewed.header(others, folded, self._past.blind)
        header = Div(text=text, name="streamvis:header")
        if state is None or state.cells is None:
            why = (
                "the server is reading its stored runs"
                if state is None and self._reading()
                else "no client has sent a layout yet"
            )
            waiting = Div(
                text=f"<p>Waiting for run <b>{html.escape(self.run)}</b>: {why}. This page "
                "updates as soon as it can.</p>",
                name="streamvis:waiting",
            )
            root = column(header, waiting)
        else:
            self._timeline.follow(state)  # its steps (or times) first: what to read at
            children: list[Any] = []
            for name, cell in state.cells.items():
                if not self.viewed.shows(name):
                    continue
                live = state.plots.get(name)
                plot = live and (self._past.at(name, live, self._timeline.cursor) or live)
                fig, source = self._figure(name, cell, plot)
                view = self._new_view(name, fig, source, plot)
                if plot is not None:
                    show = show_of(plot)
                    view.caught_up(plot, show.first(view, plot), 0.0)
                    if isinstance(show, Image):
                        drawing.add(name)
                self._views[name] = view
                children.append((fig, *cell))
            self._grid = GridBox(children=children, name="streamvis:grid")
            root = column(header, row(self._timeline.model, self._log), self._grid)
        self.doc.clear()
        self.doc.title = f"streamvis: {self.run}"
        self.doc.add_root(root)
        self.doc.add_root(self._clock)
        self.doc.add_root(self._hold)
        if drawing:
            self.notify(drawing)
        self._past.start()
