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

import html
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

from bokeh.document import Document
from bokeh.events import DocumentReady
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, CustomJS, GridBox
from bokeh.models.widgets import Div

from ..pageclock import PageClock
from ..plots.raster import viewport
from ..state import PlotState, RunState
from .figures import image_drawer, make_figure, page_data, page_frame, wants_webgl

__all__ = [
    "KEEP_IMAGE_SECONDS",
    "LARGE_INTERVAL",
    "LARGE_POINTS",
    "LARGE_SHARE",
    "SIZE_WAIT",
    "DocumentView",
]

log = logging.getLogger(__name__)

LARGE_POINTS = 5000  # a replace of this many points costs the page visible work...
LARGE_INTERVAL = 0.25  # ...so it is sent at most this often, and never holds back the rest,
LARGE_SHARE = 0.2  # nor more often than keeps its paints under this share of the page's time
KEEP_IMAGE_SECONDS = 1.0  # an image that took this long to draw is stored for a restart
SIZE_WAIT = 0.5  # a new figure's first image waits this long for the page to say its size

# Whether this page's WebGL runs on a GPU (software WebGL is far slower than a 2D canvas).
_GPU_JS = """
if (window.streamvis_gpu === undefined) {
  let gpu = false;
  try {
    const gl = document.createElement("canvas").getContext("webgl");
    if (gl) {
      const info = gl.getExtension("WEBGL_debug_renderer_info");
      const name = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
      gpu = !/swiftshader|llvmpipe|softpipe|software|basic render/i.test(name);
      gl.getExtension("WEBGL_lose_context")?.loseContext();
    }
  } catch (error) {}
  window.streamvis_gpu = gpu;
}
const gpu = window.streamvis_gpu ? "gpu" : "cpu";
"""
# Echo the clock's tick from the animation frame that paints what came with it, so the next
# update is on its way while this one paints: "tick gpu|cpu".
_ECHO_JS = (
    _GPU_JS
    + """
const tick = clock.tags[0];
requestAnimationFrame(() => { clock.text = `${tick} ${gpu}`; });
"""
)
# On load the page holds everything up to the current tick: say so, timing nothing.
_READY_JS = _GPU_JS + "clock.text = `${clock.tags[0]} ${gpu} ready`;"


@dataclass(eq=False)
class _PlotView:
    figure: Any
    source: ColumnDataSource | None
    version: int = -1
    generation: int = -1
    rows: int = 0
    replaced_at: float = 0.0
    cost: float = 0.0  # seconds from sending an update with a large replace here to its echo
    window: tuple[float, float] | None = None  # the x range the page shows, once it told us
    shown: Any = None  # what the page holds of a summarized or rasterized plot (see showing)
    drawing: Any = None  # the image being drawn off the loop: what it will show...
    drawn: tuple[Any, dict[str, Any]] | None = None  # ...and, once drawn, it with its data
    draw_seconds: float = 0.0  # how long the last drawing took
    created: float = field(default_factory=time.monotonic)

    def replace_wait(self, now: float) -> float:
        """Seconds until this plot may take another large replace (the least time between
        two is LARGE_INTERVAL, or more if their paints took more than LARGE_SHARE)."""
        return self.replaced_at + max(LARGE_INTERVAL, self.cost / LARGE_SHARE) - now

    def showing(self, plot: PlotState, rows: tuple[int, int] | None = None) -> Any:
        """What the page holds of ``plot`` once sent it as it is now (``rows`` in detail, if
        summarized; an image drawn for the page's frame, if rasterized), to compare with
        ``shown``. Ask before sending: a rasterized plot's frame depends on what was sent."""
        if plot.rasterized and self.source is not None:
            frame = page_frame(self.figure, self.source.data)
            return plot.generation, len(plot.data), viewport(plot.bounds, frame)
        return _shown(plot, rows)

    def caught_up(self, plot: PlotState, shown: Any, now: float) -> None:
        """Record that the page now holds ``plot`` as it is, as ``shown``."""
        self.version, self.generation, self.rows = plot.version, plot.generation, len(plot.data)
        self.replaced_at, self.shown = now, shown

    def retire(self) -> Any:
        """Unname this view's models before they leave the page; return the figure.

        The page keeps removed models around, and names must stay unique for lookups.
        """
        self.figure.name = None
        if self.source is not None:
            self.source.name = None
        return self.figure


class DocumentView:
    """Shows run ``run`` in ``doc``; ``lookup`` returns the run's current state (or None)."""

    def __init__(
        self,
        doc: Document,
        run: str,
        lookup: Callable[[str], RunState | None],
        runs: Callable[[], list[str]],
        interval: float,
        reading: Callable[[], bool] = lambda: False,
        keep_image: Callable[[str, str], None] = lambda run, plot: None,
    ) -> None:
        self.doc, self.run, self.interval = doc, run, interval
        self._reading = reading
        self._keep_image = keep_image  # store a plot's last image (slow to draw) for restarts
        self._lookup, self._runs = lookup, runs
        self._views: dict[str, _PlotView] = {}
        self._grid: GridBox | None = None
        self.clock = PageClock(interval)
        self._scheduled: Any = None  # the pending callback, if any...
        self._scheduled_at = 0.0  # ...and when it runs
        self._gpu = False  # the page has hardware WebGL (known from its first echo)
        self._clock = Div(name="streamvis:clock", visible=False, tags=[0], text="0")
        self._clock.js_on_change("tags", CustomJS(args=dict(clock=self._clock), code=_ECHO_JS))
        self._clock.on_change("text", self._on_echo)
        doc.js_on_event(DocumentReady, CustomJS(args=dict(clock=self._clock), code=_READY_JS))
        self._rebuild()

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
            large = self._send(dirty, now)
            if large is not None:
                self._clock.tags = [self.clock.send(now, large)]
        self._schedule()

    def _send(self, dirty: set[str], now: float) -> list[str] | None:
        """Bring the ``dirty`` plots up to date; the large replaces sent, or None if nothing
        was (a large replace that must wait is deferred on the clock)."""
        state = self._lookup(self.run)
        if "" in dirty or state is None:
            self._rebuild()
            return []
        changed, large = False, []
        for name in dirty:
            try:
                wait = self._sync(state, name, now)
            except Exception:  # one plot's failure must not stall the others
                log.exception("updating plot %r of run %r failed", name, self.run)
                continue
            if wait is None:
                changed = True
                if _is_large(state.plots[name]):
                    large.append(name)
            elif wait > 0:
                self.clock.defer(name, wait, now)
        return large if changed else None

    def _sync(self, state: RunState, name: str, now: float) -> float | None:
        """Bring one plot up to date. Returns None if it sent something, 0 if there was
        nothing to send, or the seconds after which a large replace may be sent."""
        plot = state.plots.get(name)
        view = self._views.get(name)
        if plot is None or view is None or state.cells is None:
            return 0
        rows = None
        if view.source is None or view.version != plot.version:
            view = self._replace_figure(state, name)
            if plot.rasterized:
                view.caught_up(plot, _last_drawn(plot), now)
                wait = self._sync_image(name, view, plot, now)
                if wait:
                    self.clock.defer(name, wait, now)
                return None
            shown = view.showing(plot)
        elif plot.rasterized:
            return self._sync_image(name, view, plot, now)
        elif view.generation != plot.generation:
            wait = view.replace_wait(now)
            if _is_large(plot) and wait > 0:
                return wait
            shown = view.showing(plot)
            view.source.data = page_data(plot)
        elif plot.summarized:
            rows = plot.summary_rows(view.window)
            shown = view.showing(plot, rows)
            if shown == view.shown:
                return 0
            if not plot.window_ready(rows):  # read from the store off the loop, then shown
                assert rows is not None
                if view.drawing != rows:
                    view.drawing = rows
                    self._off_loop(name, view, plot.window_reader(rows), keep=False)
                return 0
            view.source.data = page_data(plot, rows)
        elif len(plot.data) <= view.rows:
            return 0
        else:
            shown = view.showing(plot)
            if plot.spec.kind == "tandem_lines":  # a row per line: new rows lengthen every row
                view.source.data = page_data(plot)
            else:
                view.source.stream(cast(Any, plot.data.view(view.rows)))
        view.caught_up(plot, shown, now)
        return None

    def _sync_image(self, name: str, view: _PlotView, plot: PlotState, now: float) -> float | None:
        """An image of the page's frame, drawn off the loop: show the one drawn, if any, and
        draw again if the data or the frame changed since. New data is drawn at most as
        often as large replaces go; the same data in a new frame (zoom, pan, resize) at once.
        Returns as :meth:`_sync` does."""
        assert view.source is not None
        sent = view.drawn is not None
        if view.drawn is not None:
            shown, view.source.data = view.drawn
            view.drawn = None
            view.caught_up(plot, shown, now)
            if shown[0] == plot.generation:  # for other pages, and for the next draw to go on
                plot.last_image = (shown[1], shown[2], view.source.data["image"][0])
                if view.draw_seconds >= KEEP_IMAGE_SECONDS:
                    self._keep_image(self.run, name)
        wanted = view.showing(plot)
        if wanted == view.shown or view.drawing is not None:
            return None if sent else 0  # up to date, or drawing (it asks again when done)
        unsized = page_frame(view.figure, view.source.data).pixels is None
        if unsized and now - view.created < SIZE_WAIT and not sent:
            return view.created + SIZE_WAIT - now  # its size comes with its first paint
        wait = view.replace_wait(now)
        if view.shown is not None and wanted[:2] != view.shown[:2] and wait > 0:
            if not sent:
                return wait
            self.clock.defer(name, wait, now)
            return None
        view.drawing = wanted

        def progress(data: dict[str, Any]) -> None:  # on the drawing thread
            self._call_soon(lambda: self._show_partial(name, view, data))

        self._off_loop(name, view, image_drawer(plot, wanted[2], progress), keep=True)
        return None if sent else 0

    def _show_partial(self, name: str, view: _PlotView, data: dict[str, Any]) -> None:
        """Show what a long drawing has drawn so far (its newest rows) until it is done."""
        if self._views.get(name) is view and view.drawing is not None and view.source:
            view.source.data = data

    def _call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the document's thread (from any thread)."""
        try:
            self.doc.add_next_tick_callback(callback)
        except Exception:  # the page closed meanwhile
            log.debug("page of run %r closed before a callback could run", self.run)

    def _off_loop(self, name: str, view: _PlotView, work: Callable[[], Any], keep: bool) -> None:
        """Run ``work`` (drawing an image, reading rows) on the drawing thread, then update
        the plot again; ``keep`` its result for the view, as what it was started for."""
        started = time.monotonic()

        def timed() -> Any:
            try:
                return work()
            finally:
                view.draw_seconds = time.monotonic() - started

        job = _drawer().submit(timed)
        job.add_done_callback(lambda done: self._on_done(name, view, done, keep))

    def _on_done(self, name: str, view: _PlotView, done: Future[Any], keep: bool) -> None:
        """Work for a plot finished (on the drawing thread): hand it to the document."""

        def take() -> None:
            if self._views.get(name) is not view:
                return  # the figure was replaced meanwhile: new work is under way
            wanted, view.drawing = view.drawing, None
            try:
                result = done.result()
            except Exception:  # one plot's failure must not stall the page: not retried
                log.exception("updating plot %r of run %r failed", name, self.run)
                view.shown = wanted
            else:
                if keep:
                    view.drawn = (wanted, result)
            self.notify({name})

        self._call_soon(take)

    def _replace_figure(self, state: RunState, name: str) -> _PlotView:
        assert state.cells is not None and self._grid is not None
        cell = state.cells[name]
        plot = state.plots.get(name)
        fig, source = make_figure(name, cell, plot, self._gpu)
        previous = self._views[name]
        old = previous.retire()
        self._views[name] = self._new_view(name, fig, source, plot)
        self._views[name].cost = previous.cost
        self._grid.children = [
            (fig, *cell) if c[0] is old else c for c in cast(list[Any], self._grid.children)
        ]
        return self._views[name]

    def _new_view(
        self, name: str, fig: Any, source: ColumnDataSource | None, plot: PlotState | None
    ) -> _PlotView:
        """A view of a new figure; a line plot's follows the page's x range, to show the rows
        in it in detail once it has too many to show them all; an image is drawn again for
        the page's frame as it zooms, pans or resizes."""
        view = _PlotView(fig, source)
        if plot is not None and plot.rasterized:

            def reframed(attr: str, old: Any, new: Any) -> None:
                self.notify({name})

            for model, attrs in (
                (fig.x_range, ("start", "end")),
                (fig.y_range, ("start", "end")),
                (fig, ("inner_width", "inner_height")),
            ):
                for attr in attrs:
                    model.on_change(attr, reframed)
            return view
        if plot is None or plot.spec.kind != "tandem_lines":
            return view

        def moved(attr: str, old: Any, new: Any) -> None:
            start, end = fig.x_range.start, fig.x_range.end
            if isinstance(start, int | float) and isinstance(end, int | float):
                view.window = (float(start), float(end))
                self.notify({name})

        fig.x_range.on_change("start", moved)
        fig.x_range.on_change("end", moved)
        return view

    def _rebuild(self) -> None:
        state = self._lookup(self.run)
        drawing: set[str] = set()  # images to draw once the page has its figures
        for view in self._views.values():
            view.retire()
        self._views = {}
        self._grid = None
        header = Div(text=self._header(), name="streamvis:header")
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
            children: list[Any] = []
            for name, cell in state.cells.items():
                plot = state.plots.get(name)
                fig, source = make_figure(name, cell, plot, self._gpu)
                view = self._new_view(name, fig, source, plot)
                if plot is not None:
                    view.caught_up(
                        plot, _last_drawn(plot) if plot.rasterized else view.showing(plot), 0.0
                    )
                    if plot.rasterized:
                        drawing.add(name)
                self._views[name] = view
                children.append((fig, *cell))
            self._grid = GridBox(children=children, name="streamvis:grid")
            root = column(header, self._grid)
        self.doc.clear()
        self.doc.title = f"streamvis: {self.run}"
        self.doc.add_root(root)
        self.doc.add_root(self._clock)
        if drawing:
            self.notify(drawing)

    def _header(self) -> str:
        others = [r for r in self._runs() if r != self.run]
        links = ", ".join(f'<a href="/?run={html.escape(r)}">{html.escape(r)}</a>' for r in others)
        text = f"<b>streamvis</b> &middot; run <b>{html.escape(self.run)}</b>"
        return text + (f" &middot; other runs: {links}" if links else "")


_drawing_thread: ThreadPoolExecutor | None = None
_drawing_lock = threading.Lock()


def _drawer() -> ThreadPoolExecutor:
    """The thread that draws every page's images: one, so the loop keeps a core."""
    global _drawing_thread
    with _drawing_lock:
        if _drawing_thread is None:
            _drawing_thread = ThreadPoolExecutor(1, thread_name_prefix="streamvis-draw")
        return _drawing_thread


def _last_drawn(plot: PlotState) -> Any:
    """What a page shown the plot's last image holds (as :meth:`_PlotView.showing` says)."""
    if plot.last_image is None:
        return None
    rows, view, _ = plot.last_image
    return plot.generation, rows, view


def _is_large(plot: PlotState) -> bool:
    """Whether sending all of ``plot`` costs the page visible work (a summary never does;
    an image does, if far less than its points would)."""
    return plot.points >= LARGE_POINTS and not plot.summarized


def _shown(plot: PlotState, rows: tuple[int, int] | None) -> Any:
    """What a page holds of a summarized plot: the rows it shows in detail, and the row count
    when the summary reaches the last row (so new rows change it)."""
    if not plot.summarized:
        return None
    return rows if rows is not None and rows[1] < len(plot.data) else (rows, len(plot.data))
