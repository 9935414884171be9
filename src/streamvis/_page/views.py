"""What a page holds of each plot (:class:`PlotView`), and the images of big plots: what
a page has said of an image's frame, what it holds once sent one, and what draws one off the
loop. The representations (:mod:`shows`) keep these up to date."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bokeh.models import ColumnDataSource

from .._clock import AT_STEP, XMap
from .._plots.raster import Bounds, PageFrame, Viewport, packed_rgba, rasterize_pieces, viewport
from .._plotstate import PlotState
from .._specs import resolve_palette
from .figures import DEFAULT_COLOR

__all__ = [
    "LARGE_INTERVAL",
    "LARGE_SHARE",
    "PIXEL_SLACK",
    "PlotView",
    "holds",
    "image_drawer",
    "image_for",
    "image_row",
    "page_frame",
]

# A large replace (shows.LARGE_POINTS) is sent at most every LARGE_INTERVAL seconds, never
# holding back the rest, nor more often than keeps its paints under LARGE_SHARE of the page.
LARGE_INTERVAL = 0.25
LARGE_SHARE = 0.2
# An image drawn within this share of its frame's size is shown stretched to it: a step's
# axis labels move a frame's edge by a few pixels, which drew and sent every image twice.
PIXEL_SLACK = 0.03


@dataclass(eq=False)
class PlotView:
    """One plot's figure on a page, and what the page holds of it."""

    figure: Any
    source: ColumnDataSource | None
    version: int = -1
    generation: int = -1
    rows: int = 0
    replaced_at: float = 0.0
    cost: float = 0.0  # seconds from sending an update with a large replace here to its echo
    window: tuple[float, float] | None = None  # the x range the page shows, once it told us
    x_map: XMap = AT_STEP  # ...as a line plot's x is drawn (its steps: at the step, or by time)
    shown: Any = None  # what the page holds of an envelope or image (Show.showing)
    drawing: Any = None  # what the work off the loop (an image, rows) will show...
    drawn: tuple[Any, dict[str, Any]] | None = None  # ...and, once done, it with its data
    draw_seconds: float = 0.0  # how long the last drawing took
    created: float = field(default_factory=time.monotonic)
    sent: tuple[Bounds | None, Bounds | None] = (None, None)  # an image's bounds, the ones before

    def replace_wait(self, now: float) -> float:
        """Seconds until this plot may take another large replace (the least time between
        two is LARGE_INTERVAL, or more if their paints took more than LARGE_SHARE)."""
        return self.replaced_at + max(LARGE_INTERVAL, self.cost / LARGE_SHARE) - now

    def caught_up(self, plot: PlotState, shown: Any, now: float) -> None:
        """Record that the page now holds ``plot`` as it is, as ``shown``."""
        self.version, self.generation, self.rows = plot.version, plot.generation, len(plot.data)
        self.replaced_at, self.shown = now, shown

    def retire(self) -> Any:
        """Unname this view's models before they leave the page; return the figure (the
        page keeps removed models around, and names must stay unique for lookups)."""
        self.figure.name = None
        if self.source is not None:
            self.source.name = None
        return self.figure


def image_for(plot: PlotState, frame: PageFrame) -> tuple[int, int, Viewport]:
    """What a page holds once sent the image of ``plot`` drawn for ``frame``."""
    return plot.generation, len(plot.data), viewport(plot.bounds, frame)


def holds(shown: Any, wanted: tuple[int, int, Viewport]) -> bool:
    """Whether a page holding ``shown`` holds ``wanted``: the same rows, drawn for the same
    ranges, at the frame's size give or take PIXEL_SLACK (stretched to it)."""
    if shown is None or shown[:2] != wanted[:2]:
        return False
    held, view = shown[2], wanted[2]
    sizes = ((held.width, view.width), (held.height, view.height))
    return (held.x0, held.x1, held.y0, held.y1) == (view.x0, view.x1, view.y0, view.y1) and all(
        abs(a - b) <= PIXEL_SLACK * b for a, b in sizes
    )


def image_drawer(
    plot: PlotState,
    view: Viewport,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> Callable[[], dict[str, Any]]:
    """What draws a rasterized plot's source data (its image of ``view``) on another thread.
    It holds the plot's rows as they are now (rows appended later do not touch them; pieces
    that left memory are read back as it draws), so this call is cheap and the loop may go
    on appending. A long drawing gives ``progress`` the image so far (the newest rows)."""
    rows, color, last = len(plot.data), plot.spec.color, plot.last_image
    base = last if last is not None and last[1] == view and last[0] <= rows else None
    first = base[0] if base is not None else 0  # rows drawn later cover the earlier ones:
    pieces = plot.data.pieces(first, newest_first=True)  # the same view: only the new ones
    kind, levels, bounds = plot.spec.kind, plot.levels, plot.bounds
    palette = packed_rgba(resolve_palette(color.palette) if color else (DEFAULT_COLOR,))

    def row(image: np.ndarray) -> dict[str, Any]:
        if base is not None:
            image = np.where(image != 0, image, base[2])
        return image_row(image, view, bounds)

    def draw() -> dict[str, Any]:
        shown = None if progress is None else (lambda image: progress(row(image)))
        return row(rasterize_pieces(kind, pieces, rows - first, view, palette, levels, shown))

    return draw


def image_row(image: np.ndarray, view: Viewport, b: Bounds) -> dict[str, Any]:
    """An image's one row: the image of ``view``, and the data's bounds."""
    return {
        "image": [image],
        "x": [view.x0],
        "y": [view.y0],
        "dw": [view.x1 - view.x0],
        "dh": [view.y1 - view.y0],
        "left": [b.left],
        "right": [b.right],
        "bottom": [b.bottom],
        "top": [b.top],
    }


def page_frame(view: PlotView) -> PageFrame:
    """What the page has said of an image's frame, and the bounds it was sent (and those
    before, whose auto range it reports until it takes the new one)."""
    fig, data = view.figure, view.source.data if view.source is not None else {}
    ranges = []
    for axis_range in (fig.x_range, fig.y_range):
        start, end = axis_range.start, axis_range.end
        numeric = isinstance(start, int | float) and isinstance(end, int | float)
        ranges.append((float(start), float(end)) if numeric else None)
    try:
        width, height = fig.inner_width, fig.inner_height
    except ValueError:  # read-only values the page sets after its first layout
        width = height = 0
    sent = None
    if "left" in data:
        sent = Bounds(*(float(data[k][0]) for k in ("left", "right", "bottom", "top")))
    if sent != view.sent[0]:
        view.sent = (sent, view.sent[0])
    pixels = (width, height) if width and height else None
    return PageFrame(ranges[0], ranges[1], pixels, sent, view.sent[1])
