"""What a line plot's figure draws besides its lines: the lines smoothed (over the raw ones
made faint), and marks where its values were NaN or inf. Both are made the first time
they show something: until then a page pays nothing for them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from bokeh.models import CDSView, ColumnDataSource, IndexFilter, Range1d
from bokeh.models.annotations import Label, Legend

from .._plotstate import PlotState
from .figures import Among, shifted_x

__all__ = ["RAW_ALPHA", "NonFinite", "Smoothing"]

RAW_ALPHA = 0.25  # raw lines behind their smoothed ones
_BAD_COLOR = "#d62728"  # non-finite values' marks


def _no_lines() -> dict[str, Any]:
    """A line plot's page data with no lines."""
    return {"xs": [], "ys": [], "c": [], "label": []}


class Smoothing:
    """A line plot's lines smoothed, drawn over its raw lines made faint; or not smoothed.
    The smoothed twins are made when first shown: while none is, they cost nothing (ten
    runs' empty twins halved a page's paints)."""

    def __init__(self, fig: Any, name: str) -> None:
        # The figure's own list: Bokeh's select() walks every model it references (0.24 s
        # for a figure of ten runs' lines).
        self.fig, self.name = fig, name
        self.raw = [r for r in fig.renderers if f"{name}:line" in r.tags]
        self.source: ColumnDataSource | None = None
        self.shown: object = None  # what the page holds (None: not smoothed)

    def show(self, data: dict[str, Any] | None, shown: object = None) -> None:
        """Draw the lines smoothed as ``data`` says (what ``shown``), or raw (None)."""
        if (data is None) != (self.shown is None):  # turned on or off
            for raw in self.raw:
                raw.glyph.line_alpha = 1.0 if data is None else RAW_ALPHA
        if data is not None:
            if self.source is None:
                self.source = self._twins()
            self.source.data = data
        elif self.source is not None and self.shown is not None:
            self.source.data = _no_lines()
        self.shown = shown if data is not None else None

    def _twins(self) -> ColumnDataSource:
        """A smoothed twin of each raw line renderer, in its legend entry (one click hides
        both; the entry shows as on while both are visible)."""
        source = ColumnDataSource(data=_no_lines(), name=f"{self.name}:smoothed")
        items: list[Any] = [i for m in self.fig.center if isinstance(m, Legend) for i in m.items]
        for raw in self.raw:
            glyph, filtered = raw.glyph, raw.view.filter
            view = {}
            if isinstance(filtered, IndexFilter) and filtered.indices is not None:
                view = {"view": CDSView(filter=IndexFilter(indices=list(filtered.indices)))}
            style = {k: getattr(glyph, k) for k in ("xs", "line_color", "line_width", "line_dash")}
            twin = self.fig.multi_line(ys="ys", source=source, name=f"{self.name}:smooth",
                                       visible=raw.visible, **style, **view)  # fmt: skip
            for item in (i for i in items if raw in i.renderers):
                item.renderers = [*item.renderers, twin]
        return source


class NonFinite:
    """Where a line plot had NaN or inf values: a mark at the foot of the plot at each one's
    x (the first MARKS), and a line saying how many, since which x (the step, mostly)."""

    def __init__(self, fig: Any, among: Among | None = None) -> None:
        self.fig, self.among = fig, among
        label = among.label if among is not None else None  # its line, among runs'
        self.run = f"{label}: " if label else ""
        self.source: ColumnDataSource | None = None  # made with the first mark: till then,
        self.label: Label | None = None  # the page pays nothing for them
        self.shown = 0

    def _make(self) -> tuple[ColumnDataSource, Label]:
        fig, among = self.fig, self.among
        if "streamvis:marks" not in fig.extra_y_ranges:
            fig.extra_y_ranges = {**fig.extra_y_ranges, "streamvis:marks": Range1d(start=0, end=1)}
        at = 14 + 14 * (among.index if among is not None else 0)
        source = ColumnDataSource(data={"x": np.empty(0)})
        fig.scatter(shifted_x(among, "x"), 0.03, source=source, y_range_name="streamvis:marks",
                    marker="triangle", size=7, color=_BAD_COLOR)  # fmt: skip
        label = Label(x=4, y=at, x_units="screen", y_units="screen", text="",
                      text_color=_BAD_COLOR, text_font_size="9pt", visible=False)  # fmt: skip
        fig.add_layout(label)
        return source, label

    def show(self, plot: PlotState) -> None:
        """Bring the marks and the count up to ``plot``'s (nothing is sent if unchanged)."""
        if plot.bad == self.shown:
            return
        if self.source is None or self.label is None:
            self.source, self.label = self._make()
        self.shown = plot.bad
        self.source.data = {"x": np.array(plot.bad_at, dtype=np.float64)}
        since = f" since {plot.bad_at[0]:g}" if plot.bad_at else ""
        text = f"{self.run}{plot.bad} non-finite values (NaN, inf){since}"
        self.label.update(text=text, visible=True)
