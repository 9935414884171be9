"""How a page shows a plot, one class per representation: points, envelope or image.

Each builds the page data from the plot's state, says what the page holds once sent it (a
page is stale when that differs from what it holds), and brings a page's figure up to date;
:mod:`session` picks one per plot (:func:`show_of`) and does the document's I/O through
:class:`Page`. ``sync`` returns None if it sent something, 0 if nothing, or the seconds
after which a large replace may go.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

import numpy as np

from .._pageclock import PageClock
from .._plots.columns import Columns, per_line
from .._plots.raster import auto_view
from .._plotstate import PlotState
from .views import PlotView, holds, image_drawer, image_for, image_row, page_frame

__all__ = [
    "KEEP_IMAGE_SECONDS",
    "LARGE_POINTS",
    "SIZE_WAIT",
    "Envelope",
    "Image",
    "Page",
    "Points",
    "follow",
    "is_large",
    "page_data",
    "predrawer",
    "show_of",
]

LARGE_POINTS = 5000  # a replace of this many points costs the page visible work (views.py)
KEEP_IMAGE_SECONDS = 1.0  # an image that took this long to draw is stored for a restart
SIZE_WAIT = 0.5  # a new figure's first image waits this long for the page to say its size


class Page(Protocol):
    """What a representation needs of the page session showing it."""

    run: str
    clock: PageClock

    @property
    def live(self) -> bool: ...  # following the newest data: large replaces are spaced then

    def notify(self, names: set[str]) -> None: ...
    def off_loop(self, name: str, view: PlotView, work: Callable[[], Any], keep: bool) -> None: ...
    def call_soon(self, callback: Callable[[], None]) -> None: ...
    def is_current(self, name: str, view: PlotView) -> bool: ...
    def keep_image(self, name: str) -> None: ...


class Points:
    """A plot's points (or segments, or lines), sent whole on a replace and streamed as
    they are appended. The other representations take how new figures and replaces go."""

    def data(self, plot: PlotState, rows: tuple[int, int] | None = None) -> dict[str, Any]:
        """All the page's source holds of ``plot`` (``rows`` in detail, for an envelope)."""
        columns = plot.data.view()
        return lines_data(plot, columns) if plot.spec.kind == "tandem_lines" else dict(columns)

    def showing(self, view: PlotView, plot: PlotState, rows: tuple[int, int] | None = None) -> Any:
        """What the page holds of ``plot`` once sent it as it is now, to compare with
        ``view.shown`` (points: nothing to compare; their row count says)."""
        return None

    def sends(self, view: PlotView, plot: PlotState) -> bool:
        """Whether bringing ``view`` up to date may send the page something (yes, unless
        known otherwise: an image's page knows, whose ranges come back after each step)."""
        return True

    def first(self, view: PlotView, plot: PlotState) -> Any:
        """What a new figure's page holds, built with :meth:`data`."""
        return self.showing(view, plot)

    def sync(self, page: Page, name: str, view: PlotView, plot: PlotState, now: float) -> Any:
        """Bring ``view`` up to date with ``plot``; returns as the module says."""
        assert view.source is not None
        if view.version != plot.version:  # a new figure, built with the data
            view.caught_up(plot, self.first(view, plot), now)
            return None
        if view.generation != plot.generation:  # a replace
            wait = view.replace_wait(now) if page.live else 0.0
            if is_large(plot) and wait > 0:
                return wait
            shown = self.showing(view, plot)
            view.source.data = self.data(plot)
        else:
            shown = self.appended(page, name, view, plot)
            if shown is _NOTHING:
                return 0
        view.caught_up(plot, shown, now)
        return None

    def appended(self, page: Page, name: str, view: PlotView, plot: PlotState) -> Any:
        """Send the rows appended since the page was last sent any; what it holds then
        (_NOTHING: nothing to send)."""
        assert view.source is not None
        if len(plot.data) <= view.rows:
            return _NOTHING
        if plot.spec.kind == "tandem_lines":  # a row per line: new rows lengthen every row
            view.source.data = self.data(plot)
        else:
            view.source.stream(cast(Any, plot.data.view(view.rows)))
        return None


_NOTHING = object()


class Envelope(Points):
    """A line plot with too many rows to send: a summary that draws like all of them, with
    the rows in the page's x window in detail (read from the store off the loop where they
    left memory)."""

    def data(self, plot: PlotState, rows: tuple[int, int] | None = None) -> dict[str, Any]:
        return lines_data(plot, plot.summary(rows))

    def showing(self, view: PlotView, plot: PlotState, rows: tuple[int, int] | None = None) -> Any:
        """The rows shown in detail, and the row count if the summary reaches the last row."""
        return rows if rows is not None and rows[1] < len(plot.data) else (rows, len(plot.data))

    def appended(self, page: Page, name: str, view: PlotView, plot: PlotState) -> Any:
        assert view.source is not None
        rows = plot.summary_rows(view.window)
        shown = self.showing(view, plot, rows)
        if shown == view.shown:
            return _NOTHING
        if not plot.window_ready(rows):  # read off the loop, then shown
            assert rows is not None
            if view.drawing != rows:
                view.drawing = rows
                page.off_loop(name, view, plot.window_reader(rows), keep=False)
            return _NOTHING
        view.source.data = self.data(plot, rows)
        return shown


class Image(Points):
    """A scatter or line plot of too many points to draw one by one: an image drawn off the
    loop for the page's ranges and pixel size, drawn again when they or the data change."""

    def data(self, plot: PlotState, rows: tuple[int, int] | None = None) -> dict[str, Any]:
        """The last image drawn of the plot (maybe of fewer rows: shown till redrawn), or a
        blank one; with the data's bounds, which the page's auto ranges follow."""
        if plot.last_image is not None:
            _, view, image = plot.last_image
            return image_row(image, view, plot.bounds)
        return image_row(np.zeros((1, 1), np.uint32), auto_view(plot.bounds), plot.bounds)

    def showing(self, view: PlotView, plot: PlotState, rows: tuple[int, int] | None = None) -> Any:
        """The data's generation and rows, and the view drawn for the page's frame (ask
        before sending: the frame depends on the bounds sent)."""
        assert view.source is not None
        return image_for(plot, page_frame(view))

    def sends(self, view: PlotView, plot: PlotState) -> bool:
        """Whether :meth:`sync` sends something now (what it draws goes once drawn)."""
        return view.version != plot.version or view.drawn is not None

    def first(self, view: PlotView, plot: PlotState) -> Any:
        if plot.last_image is None:
            return None
        rows, drawn, _ = plot.last_image
        return plot.generation, rows, drawn

    @staticmethod
    def drawer(view: PlotView) -> Callable[[PlotState], Any]:
        """What draws, on any thread, the image of a plot for ``view``'s frame as it is now:
        (what the page will hold, its data), for ``view.drawn``."""
        assert view.source is not None
        frame, shown = page_frame(view), view.shown

        def draw(plot: PlotState) -> Any:
            wanted = image_for(plot, frame) if plot.rasterized else None
            if wanted is None or holds(shown, wanted):  # none, or the page's (same frame)
                return None
            return wanted, image_drawer(plot, wanted[2])()

        return draw

    def sync(self, page: Page, name: str, view: PlotView, plot: PlotState, now: float) -> Any:
        """Show the image drawn, if any, and draw again if the data or the frame changed
        since: new data at most as often as large replaces go, a new frame (zoom, pan,
        resize) at once."""
        assert view.source is not None
        if view.version != plot.version:
            view.caught_up(plot, self.first(view, plot), now)
            wait = self._draw(page, name, view, plot, now)
            if wait:
                page.clock.defer(name, wait, now)
            return None
        return self._draw(page, name, view, plot, now)

    def _draw(self, page: Page, name: str, view: PlotView, plot: PlotState, now: float) -> Any:
        assert view.source is not None
        sent = view.drawn is not None
        if view.drawn is not None:
            shown, view.source.data = view.drawn
            view.drawn = None
            view.caught_up(plot, shown, now)
            if shown[0] == plot.generation:  # for other pages, and for the next draw to go on
                plot.last_image = (shown[1], shown[2], view.source.data["image"][0])
                if view.draw_seconds >= KEEP_IMAGE_SECONDS:
                    page.keep_image(name)
        wanted = self.showing(view, plot)
        if holds(view.shown, wanted) or view.drawing is not None:
            return None if sent else 0  # up to date, or drawing (it asks again when done)
        unsized = page_frame(view).pixels is None
        if unsized and now - view.created < SIZE_WAIT and not sent:
            return view.created + SIZE_WAIT - now  # its size comes with its first paint
        wait = view.replace_wait(now) if page.live else 0.0
        if view.shown is not None and wanted[:2] != view.shown[:2] and wait > 0:
            if not sent:
                return wait
            page.clock.defer(name, wait, now)
            return None
        view.drawing = wanted

        def progress(data: dict[str, Any]) -> None:  # on the drawing thread: the newest rows
            def show() -> None:
                if page.is_current(name, view) and view.drawing is not None and view.source:
                    view.source.data = data

            page.call_soon(show)

        page.off_loop(name, view, image_drawer(plot, wanted[2], progress), keep=True)
        return None if sent else 0


_SHOWS = {"points": Points(), "envelope": Envelope(), "image": Image()}


def show_of(plot: PlotState) -> Points:
    """How pages show ``plot`` now (a line plot turns into an envelope as it grows; a plot
    turns into an image with a new figure)."""
    if plot.rasterized:
        return _SHOWS["image"]
    return _SHOWS["envelope" if plot.summarized else "points"]


def lines_data(plot: PlotState, columns: Columns) -> dict[str, Any]:
    """A line plot's page data: a row per line, each with its name (for hover)."""
    data = per_line(columns)
    labels = plot.spec.labels or [f"line {k}" for k in range(len(data["ys"]))]
    return {**data, "label": list(labels)}


def page_data(plot: PlotState, rows: tuple[int, int] | None = None) -> dict[str, Any]:
    """All a page's source holds of ``plot``, as it shows now."""
    return show_of(plot).data(plot, rows)


def is_large(plot: PlotState) -> bool:
    """Whether sending all of ``plot`` costs the page visible work (an envelope never does;
    an image does, if far less than its points would)."""
    return plot.points >= LARGE_POINTS and not plot.summarized


def follow(page: Page, name: str, view: PlotView, plot: PlotState | None) -> None:
    """Have a new figure tell the server what it needs: an image, the page's ranges and
    size (to draw it for them); a line plot, its x range (to show the rows in it in detail
    once it is an envelope)."""
    fig = view.figure
    if plot is not None and plot.rasterized:

        def reframed(attr: str, old: Any, new: Any) -> None:
            page.notify({name})

        for model, attrs in (
            (fig.x_range, ("start", "end")),
            (fig.y_range, ("start", "end")),
            (fig, ("inner_width", "inner_height")),
        ):
            for attr in attrs:
                model.on_change(attr, reframed)
    elif plot is not None and plot.spec.kind == "tandem_lines":

        def moved(attr: str, old: Any, new: Any) -> None:
            start, end = fig.x_range.start, fig.x_range.end
            if isinstance(start, int | float) and isinstance(end, int | float):
                view.window = (view.x_map.step(float(start)), view.x_map.step(float(end)))
                page.notify({name})

        fig.x_range.on_change("start", moved)
        fig.x_range.on_change("end", moved)


def predrawer(view: PlotView | None) -> Callable[[PlotState], Any] | None:
    """What draws a plot's image for ``view``'s frame as it is now, on any thread (None: the
    view shows no image): a step's images are drawn as its plots are read, to go with them."""
    if view is None or view.source is None or "image" not in view.source.data:
        return None
    return Image.drawer(view)
