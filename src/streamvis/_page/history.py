"""What a page shows of its run at a step: each plot as its latest frame at or before the
step left it (a replace plot, that frame; an append plot, its rows then), read from the
store off the loop, and kept while the step stays.

Line plots show every row, whatever the step (the page marks the step with a cursor and
draws the rest faint); a plot with no frame at or before the step (it began later, or an
append plot replaced since) shows what it shows now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .._history import Stored
from .._plotstate import PlotState, at_step

__all__ = ["PastPlots", "Read", "Submit"]

log = logging.getLogger("streamvis.page")

Read = Callable[[str, int], "Stored | None"]  # (plot, step) -> its frame then, from the store
# Run the first callable off the loop, then the second on it with what it returned (or the
# exception it raised).
Submit = Callable[[Callable[[], Any], Callable[[Any], None]], None]


class PastPlots:
    """A page's plots at its step, as they are read."""

    def __init__(
        self,
        read: Read | None,
        submit: Submit,
        changed: Callable[[set[str], dict[str, Any]], None],
        prepare: Callable[[str], Callable[[PlotState], Any] | None] = lambda name: None,
    ) -> None:
        """``changed`` hears which plots were read, with the images drawn of them;
        ``prepare`` gives, on the loop, what draws a plot's image for the page (None: no
        image)."""
        self._read, self._submit, self._changed = read, submit, changed
        self._prepare = prepare
        self._plots: dict[str, tuple[int, PlotState]] = {}  # name -> (step, plot then)
        self._reading: dict[str, int] = {}  # name -> the step being read
        self._wanted: dict[str, tuple[int, PlotState]] = {}  # to read: its step, live plot

    @property
    def blind(self) -> bool:
        """Whether there is no store to read the past from (every step shows live)."""
        return self._read is None

    def at(self, name: str, live: PlotState, step: int | None) -> PlotState | None:
        """What the page shows of plot ``name`` at ``step`` (None: live): ``live`` itself
        when live, for an append plot, or without a store; the plot as the stored frame
        left it once read; None while it is to be read (:meth:`start`) or being read (the
        page keeps what it shows)."""
        if step is None or live.spec.kind == "tandem_lines" or self._read is None:
            return live  # a line plot shows every row, the rest of its curves faint
        found = self._plots.get(name)
        if found is not None and found[0] == step:
            return found[1]
        if self._reading.get(name) != step:
            self._wanted[name] = (step, live)
        return None

    def start(self) -> None:
        """Read what :meth:`at` lacked since the last call, in one job: a step's plots come
        together, in one update of the page (its images drawn in the same job, by what
        ``prepare`` gave for them)."""
        wanted, self._wanted = self._wanted, {}
        read = self._read
        if not wanted or read is None:
            return
        self._reading.update({name: step for name, (step, _) in wanted.items()})
        # What the job may touch: frozen copies of the live plots (appends go on meanwhile),
        # and each image's drawer, made here, where the page's frame is known.
        jobs = {n: (step, live.frozen(), self._prepare(n)) for n, (step, live) in wanted.items()}

        def work() -> dict[str, tuple[PlotState | None, Any]]:  # on the drawing thread
            found: dict[str, tuple[PlotState | None, Any]] = {}
            for name, (step, live, draw) in jobs.items():
                if self._reading.get(name) != step:  # moved on meanwhile (play, keys): skip
                    continue
                try:
                    stored = read(name, step)
                    plot = None
                    if stored is not None:
                        plot = at_step(live, stored.frame, stored.id, stored.rows)
                    found[name] = (plot, draw(plot) if draw and plot is not None else None)
                except Exception:  # unreadable (the store reports it), or undrawable
                    log.exception("plot %r at step %d could not be shown", name, step)
                    found[name] = (None, None)
            return found

        def done(found: Any) -> None:  # on the loop
            if not isinstance(found, dict):
                found = {}
            changed, drawn = set(), {}
            for name, (step, live) in wanted.items():
                if self._reading.get(name) != step:
                    continue  # the page moved on meanwhile
                del self._reading[name]
                plot, image = found.get(name, (None, None))
                self._plots[name] = (step, live if plot is None else plot)  # none: as now
                changed.add(name)
                if image is not None:
                    drawn[name] = image
            if changed:
                self._changed(changed, drawn)

        self._submit(work, done)
