"""One browser document following one or more runs' state, updated in batches on its own
ticks.

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

A page of several runs (``/?run=a&run=b``) shows each plot name once (:mod:`cells`).
"""

from __future__ import annotations

import functools
import html
import logging
import time
from collections.abc import Callable
from typing import Any

from bokeh.document import Document
from bokeh.events import DocumentReady
from bokeh.layouts import column, row
from bokeh.models import CustomJS, GridBox
from bokeh.models.annotations import BoxAnnotation, Span
from bokeh.models.widgets import Div, Select, Slider, Toggle

from .._history import Stored
from .._pageclock import PageClock
from .._specs import Cell
from .._state import RunState
from .drawing import off_loop
from .figures import wants_webgl
from .history import PastPlots
from .lines import NonFinite
from .scripts import ECHO_JS, HOLD_JS, READY_JS
from .shows import is_large, show_of
from .stepping import Stepping
from .timeline import Timeline
from .viewed import X_AXES, Viewed
from .views import PlotView

__all__ = ["DocumentView"]

log = logging.getLogger("streamvis.page")


class DocumentView(Stepping):
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
        self.run, self.runs = viewed.run, viewed.runs
        self._reading = reading
        self._keep_image = keep_image  # store a plot's last image (slow to draw) for restarts
        self._lookup, self._runs = lookup, runs
        self._views: dict[str, PlotView] = {}  # by key (see the module's docstring)
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
        submit = functools.partial(off_loop, call_soon=self.call_soon)
        self._pasts = {  # each run's plots at the page's step
            run: PastPlots(
                functools.partial(history, run) if history is not None else None,
                submit,
                functools.partial(self._read_past, run),
                functools.partial(self._predrawer, run),
                functools.partial(self._where, run),
            )
            for run in self.runs
        }
        self._cursors: dict[str, tuple[Span, BoxAnnotation | None, str]] = {}  # steps
        self._cells: dict[str, tuple[Any, Cell]] = {}  # what each cell shows
        self._bad: dict[str, NonFinite] = {}  # line plots' NaN and inf values
        self._log = Toggle(label="log y", name="streamvis:log", width=60)  # the line plots'
        self._log.on_change("active", lambda attr, old, new: self._log_lines())
        self._smoothing = Slider(  # TensorBoard's range; its default (0.6) is a click away
            start=0, end=0.999, step=0.001, value=0, title="smoothing", width=160,
            name="streamvis:smoothing",
        )  # fmt: skip
        self._smoothing.on_change("value_throttled", lambda attr, old, new: self._smoothed())
        axes: list[str | tuple[Any, str]] = list(X_AXES.items())
        self._x = Select(  # line plots by step, steps since the first, or seconds since start
            options=axes, value=viewed.x, name="streamvis:x", width=200
        )
        self._x.on_change("value", lambda attr, old, new: self.notify({""}))
        self._rebuild()

    def changed(self, run: str, names: set[str]) -> None:
        """Plots of ``run`` changed ('' = its layout, or the run itself)."""
        self.notify({self._key(run, name) if name else "" for name in names})

    def notify(self, names: set[str]) -> None:
        """Mark plots (by key) as changed ('' = the layout); schedule one batched update."""
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
        if gpu == self._gpu:
            return
        self._gpu = gpu
        rebuild = set()
        for key in self._views:
            _, state, name = self._plot(key)
            if state is not None and wants_webgl(state.plots.get(name)):
                rebuild.add(key)
        for name in rebuild:
            self._views[name].version = -1
        self.notify(rebuild)

    def _update(self) -> None:
        self._scheduled = None
        now = time.monotonic()
        dirty = self.clock.begin(now)
        if dirty is not None:
            # At a step, its plots paint together: held till the update's tick, if it sends any
            hold = self._timeline.cursor is not None and self._sends(dirty)
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
        self._timeline.follow(state, self._others())
        if by_time != self._timeline.by_time:
            for past in self._pasts.values():
                past.forget()
        self._remap()
        self._mark(self._timeline.cursor)
        changed, large = False, []
        for key in dirty:
            run, state_of, name = self._plot(key)
            if state_of is None:
                continue
            try:
                wait = self._sync(run, state_of, key, now)
            except Exception:  # one plot's failure must not stall the others
                log.exception("updating plot %r of run %r failed", name, run)
                continue
            if wait is None:
                changed = True
                if is_large(state_of.plots[name]):
                    large.append(key)
            elif wait > 0:
                self.clock.defer(key, wait, now)
        for past in self._pasts.values():
            past.start()  # the plots this update could not show yet, at the page's step
        return large if changed else None

    def _others(self) -> list[RunState]:
        """The states of the runs shown beside the first (those that have sent anything)."""
        states = (self._lookup(run) for run in self.runs[1:])
        return [state for state in states if state is not None]

    def _sync(self, run: str, state: RunState, key: str, now: float) -> float | None:
        """Bring one plot up to date, as its representation does (:mod:`shows`); a plot
        whose figure changed gets its cell built anew (every run's figure of it). Returns
        None if it sent something, 0 if there was nothing to send, or the seconds after
        which a large replace may go."""
        name = self._split(key)[1]
        plot = self._shown(run, state, name)
        view = self._views.get(key)
        if plot is None or view is None or state.cells is None:
            return 0
        if view.source is None or view.version != plot.version:
            self._replace_cell(name)  # its new figures are built with their data
            return None
        wait: float | None = show_of(plot).sync(self, key, view, plot, now)
        if key in self._bad:
            self._bad[key].show(plot)
        if key in self._smooth and self._smoothen(key, plot) and wait == 0:
            wait = None
        return wait

    @property
    def live(self) -> bool:
        """Whether the page follows the newest data (not a step the person chose)."""
        return self._timeline.cursor is None

    def is_current(self, name: str, view: PlotView) -> bool:
        """Whether ``view`` is still the page's figure of plot ``name`` (a key)."""
        return self._views.get(name) is view

    def keep_image(self, name: str) -> None:
        """Store the plot's last image, slow to draw, for a restarted server to show."""
        if self._timeline.cursor is None:  # of the live plot only
            self._keep_image(*self._split(name))

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
                run, plot = self._split(name)
                log.error("updating plot %r of run %r failed", plot, run, exc_info=result)
                view.shown = wanted  # not retried
            elif keep:
                view.drawn = (wanted, result)
            self.notify({name})

        off_loop(timed, take, self.call_soon)

    def _rebuild(self) -> None:
        drawing: set[str] = set()  # images to draw once the page has its figures
        for view in self._views.values():
            view.retire()
        self._views, self._cursors, self._bad, self._smooth, self._cells = {}, {}, {}, {}, {}
        self._grid, self._maps = None, {}
        states = [s for s in (self._lookup(run) for run in self.runs) if s is not None]
        state = self._lookup(self.run)
        others = [r for r in self._runs() if r not in self.runs]
        text = self.viewed.header(others, sum(s.folded for s in states), self._blind)
        header = Div(text=text, name="streamvis:header")
        cells: dict[str, Any] = {}  # each plot's cell, as the first run laying it out says
        for laid in states:
            for name, cell in (laid.cells or {}).items():
                cells.setdefault(name, cell)
        if state is None or not cells:
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
            self._timeline.follow(state, self._others())  # steps first: what to read at
            for name, cell in cells.items():
                if self.viewed.shows(name):
                    self._cells[name] = (self._cell(name, cell, drawing), cell)
            children: list[Any] = [(child, *cell) for child, cell in self._cells.values()]
            self._grid = GridBox(children=children, name="streamvis:grid")
            controls = row(self._timeline.model, self._log, self._smoothing, self._x)
            root = column(header, controls, self._grid)
        self.doc.clear()
        self._timeline.relaid()
        self.doc.title = f"streamvis: {', '.join(self.runs)}"
        self.doc.add_root(root)
        self.doc.add_root(self._clock)
        self.doc.add_root(self._hold)
        self.doc.add_root(self._timeline.status)
        smoothing = set(self._smooth) if self._smoothing.value_throttled else set()
        if drawing or smoothing:
            self.notify(drawing | smoothing)
        for past in self._pasts.values():
            past.start()

    @property
    def _blind(self) -> bool:
        """Whether the page has no history to read (every step shows live)."""
        return self._pasts[self.run].blind
