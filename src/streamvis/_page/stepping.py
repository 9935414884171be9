"""A page at a step (mixed into the page's session): the time control's moves, each run's
plots read at the page's step (:mod:`history`) and their images, drawn as they are read,
taken to the page with them; whether an update at a step sends anything (its plots are held
until its tick only then)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._plotstate import PlotState
from .._state import RunState
from .cells import Cells
from .history import AHEAD
from .shows import predrawer, show_of

__all__ = ["Stepping"]


class Stepping(Cells):
    """What a page does at a step, and when it moves."""

    def _predrawer(self, run: str, name: str) -> Callable[[PlotState], Any] | None:
        """What draws an image of ``run``'s plot ``name`` for the page (None: no image)."""
        return predrawer(self._views.get(self._key(run, name)))

    def _where(self, run: str, cursor: int) -> int | float:
        """What ``run``'s plots are read at for the page's ``cursor``: by time, the same
        seconds after its own first frame."""
        state = self._lookup(run) if run != self.run else None
        origin = state.times[0] if state is not None and state.times is not None else None
        return self._timeline.at(cursor, origin)

    def _moved(self, step: int | None) -> None:
        """The person moved the time control: show every plot at ``step`` (None: live), in
        one update once what it needs is read (the page has nothing to do meanwhile)."""
        reading = False
        for key in self._views:  # read (and draw) the step now, not at the next update's
            run, state, name = self._plot(key)  # tick: scrub p50 84-97 ms, 107-111 without
            if state is not None and name in state.plots:
                reading |= self._shown(run, state, name) is None
        for past in self._pasts.values():
            past.start()
        if step is not None:
            self._take_images(set(self._views), step)  # of plots read ahead, if any
        self.clock.hurry()
        if not reading:  # else the read, once done, shows the step
            self.notify(set(self._views))

    def _read_past(self, run: str, names: set[str], step: int) -> None:
        """Plots of ``run`` were read at ``step`` (and images of them drawn): show them, if
        the page is there (else they wait, read ahead)."""
        if step != self._timeline.cursor:
            return
        self._take_images({self._key(run, name) for name in names}, step)
        self.clock.hurry()  # a step the person asked for: show it as soon as it is read
        self.notify(set(self._views))  # with the plots it needed no read for

    def _take_images(self, names: set[str], step: int) -> None:
        """Show the images drawn of plots (by key) as they were read at ``step``."""
        for key in names:
            view = self._views.get(key)
            if view is not None and view.drawing is None:
                run, name = self._split(key)
                image = self._pasts[run].image(name, step)
                if image is not None:
                    view.drawn = image

    def _shown(self, run: str, state: RunState, name: str) -> PlotState | None:
        """The plot the page shows at its step (None: not read yet, or no such plot)."""
        live, cursor = state.plots.get(name), self._timeline.cursor
        if live is None:
            return None
        ahead = self._timeline.ahead(cursor, AHEAD) if cursor is not None else []
        return self._pasts[run].at(name, live, cursor, ahead)  # playing: read ahead

    def _sends(self, dirty: set[str]) -> bool:
        """Whether bringing the ``dirty`` plots up to date may send the page any: not when
        all are images up to date (their ranges come back after each step; holding the
        page's plots for nothing cost it up to 20 ms). Asks for what is to be read, as
        the update does next."""
        if "" in dirty:
            return True
        for key in dirty:
            run, state, name = self._plot(key)
            plot = self._shown(run, state, name) if state is not None else None
            view = self._views.get(key)
            if view is None or plot is None:
                continue
            if view.source is None or show_of(plot).sends(view, plot):  # None: a new figure
                return True
        return False
