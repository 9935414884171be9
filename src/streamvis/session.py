"""One browser document following one run's state, updated in batches on its own ticks.

The ingest side only calls :meth:`DocumentView.notify`, which schedules at most one update
per ``interval`` through the document's own callbacks (the one safe way in from outside the
document lock). The update sends each plot the difference since the last one: a ``stream``
of the new rows for appends, one ``data`` assignment for the latest replace.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from bokeh.document import Document
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, GridBox
from bokeh.models.widgets import Div

from .plots.figures import make_figure
from .state import RunState

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _PlotView:
    figure: Any
    source: ColumnDataSource | None
    version: int = -1
    generation: int = -1
    rows: int = 0

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
    ) -> None:
        self.doc, self.run, self.interval = doc, run, interval
        self._lookup, self._runs = lookup, runs
        self._views: dict[str, _PlotView] = {}
        self._grid: GridBox | None = None
        self._dirty: set[str] = set()
        self._scheduled = False
        self._last_update = 0.0
        self._rebuild()

    def notify(self, names: set[str]) -> None:
        """Mark plots as changed ('' = the layout); schedule one batched update."""
        self._dirty |= names
        if self._scheduled:
            return
        self._scheduled = True
        wait = self._last_update + self.interval - time.monotonic()
        if wait > 0:
            self.doc.add_timeout_callback(self._update, int(wait * 1000) + 1)
        else:
            self.doc.add_next_tick_callback(self._update)

    def _update(self) -> None:
        self._scheduled = False
        self._last_update = time.monotonic()
        dirty, self._dirty = self._dirty, set()
        state = self._lookup(self.run)
        if "" in dirty or state is None:
            self._rebuild()
            return
        for name in dirty:
            try:
                self._sync(state, name)
            except Exception:  # one plot's failure must not stall the others
                log.exception("updating plot %r of run %r failed", name, self.run)

    def _sync(self, state: RunState, name: str) -> None:
        plot = state.plots.get(name)
        view = self._views.get(name)
        if plot is None or view is None or state.cells is None:
            return
        if view.source is None or view.version != plot.version:
            self._replace_figure(state, name)
        elif view.generation != plot.generation:
            view.source.data = plot.data.view()
        elif len(plot.data) > view.rows:
            view.source.stream(cast(Any, plot.data.view(view.rows)))
        else:
            return
        view = self._views[name]
        view.version, view.generation, view.rows = plot.version, plot.generation, len(plot.data)

    def _replace_figure(self, state: RunState, name: str) -> None:
        assert state.cells is not None and self._grid is not None
        cell = state.cells[name]
        fig, source = make_figure(name, cell, state.plots.get(name))
        old = self._views[name].retire()
        self._views[name] = _PlotView(fig, source)
        self._grid.children = [
            (fig, *cell) if c[0] is old else c for c in cast(list[Any], self._grid.children)
        ]

    def _rebuild(self) -> None:
        state = self._lookup(self.run)
        for view in self._views.values():
            view.retire()
        self._views = {}
        self._grid = None
        header = Div(text=self._header(), name="streamvis:header")
        if state is None or state.cells is None:
            waiting = Div(
                text=f"<p>Waiting for run <b>{html.escape(self.run)}</b>: no client has sent "
                "a layout yet. This page updates as soon as one does.</p>",
                name="streamvis:waiting",
            )
            root = column(header, waiting)
        else:
            children: list[Any] = []
            for name, cell in state.cells.items():
                plot = state.plots.get(name)
                fig, source = make_figure(name, cell, plot)
                view = _PlotView(fig, source)
                if plot is not None:
                    view.version, view.generation, view.rows = (
                        plot.version,
                        plot.generation,
                        len(plot.data),
                    )
                self._views[name] = view
                children.append((fig, *cell))
            self._grid = GridBox(children=children, name="streamvis:grid")
            root = column(header, self._grid)
        self.doc.clear()
        self.doc.title = f"streamvis: {self.run}"
        self.doc.add_root(root)

    def _header(self) -> str:
        others = [r for r in self._runs() if r != self.run]
        links = ", ".join(f'<a href="/?run={html.escape(r)}">{html.escape(r)}</a>' for r in others)
        text = f"<b>streamvis</b> &middot; run <b>{html.escape(self.run)}</b>"
        return text + (f" &middot; other runs: {links}" if links else "")
