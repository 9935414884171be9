"""What a page shows of its run at a step: each plot as its latest frame at or before the
step left it (a replace plot, that frame; an append plot, its rows then), read from the
store off the loop, and kept while the step stays.

Line plots show every row, whatever the step (the page marks the step with a cursor and
draws the rest faint); a plot with no frame at or before the step (it began later, or an
append plot replaced since) shows what it shows now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from .._history import Stored
from .._plotstate import PlotState, at_step

__all__ = ["AHEAD", "PastPlots", "Read", "Submit"]

log = logging.getLogger("streamvis.page")

# (plot, step or time) -> its frame then, from the store
Read = Callable[[str, "int | float"], "Stored | None"]
# Run the first callable off the loop, then the second on it with what it returned (or the
# exception it raised).
Submit = Callable[[Callable[[], Any], Callable[[Any], None]], None]

AHEAD = 2  # steps read ahead of the cursor while the page plays
_KEPT = 2 * AHEAD + 2  # steps kept read, per plot (around the cursor)


class PastPlots:
    """A page's plots at its step (and, while it plays, the next few), as they are read."""

    def __init__(
        self,
        read: Read | None,
        submit: Submit,
        changed: Callable[[set[str], int], None],
        prepare: Callable[[str], Callable[[PlotState], Any] | None] = lambda name: None,
        where: Callable[[int], int | float] = lambda step: step,
    ) -> None:
        """``changed`` hears which plots were read at which step (their images are taken
        with :meth:`image`); ``prepare`` gives, on the loop, what draws a plot's image for
        the page (None: no image)."""
        self._read, self._submit, self._changed = read, submit, changed
        self._prepare, self._where = prepare, where  # where: a page's step, for the store
        self._plots: dict[str, dict[int, tuple[PlotState, Any]]] = {}  # step -> plot, image
        self._reading: dict[str, set[int]] = {}  # name -> the steps being read
        self._wanted: dict[tuple[str, int], PlotState] = {}  # to read: (name, step) -> live

    @property
    def blind(self) -> bool:
        """Whether there is no store to read the past from (every step shows live)."""
        return self._read is None

    def at(
        self, name: str, live: PlotState, step: int | None, ahead: Sequence[int] = ()
    ) -> PlotState | None:
        """What the page shows of plot ``name`` at ``step`` (None: live): ``live`` itself
        when live, for a line plot, or without a store; the plot as the stored frame left it
        once read; None while it is to be read (:meth:`start`) or being read (the page keeps
        what it shows). The steps ``ahead`` (playing) are read too; reads of other steps are
        dropped (the page moved away)."""
        if step is None or live.spec.kind == "tandem_lines" or self._read is None:
            return live  # a line plot shows every row, the rest of its curves faint
        reading = self._reading.setdefault(name, set())
        reading &= {step, *ahead}
        for wanted in (step, *ahead):
            if wanted not in reading and wanted not in self._plots.get(name, {}):
                self._wanted[(name, wanted)] = live
        found = self._plots.get(name, {}).get(step)
        return None if found is None else found[0]

    def forget(self) -> None:
        """Drop what was read, and reads under way: the page's steps mean other frames now
        (a run that had no steps sent one: its axis went from time to steps)."""
        self._plots.clear()
        self._reading.clear()
        self._wanted.clear()

    def image(self, name: str, step: int) -> Any:
        """The image drawn of plot ``name`` at ``step`` as it was read (once; None if none)."""
        found = self._plots.get(name, {}).get(step)
        if found is None or found[1] is None:
            return None
        self._plots[name][step] = (found[0], None)
        return found[1]

    def start(self) -> None:
        """Read what :meth:`at` asked for since the last call, in one job,
        step by step: a step's plots come together, in one update of the page (its images
        drawn in the same job, by what ``prepare`` gave for them)."""
        wanted, self._wanted = self._wanted, {}
        read = self._read
        if not wanted or read is None:
            return
        for name, step in wanted:
            self._reading.setdefault(name, set()).add(step)
        # What the job may touch: frozen copies of the live plots (appends go on meanwhile),
        # and each image's drawer, made here, where the page's frame is known.
        jobs = [
            (n, step, self._where(step), live.frozen(), self._prepare(n))
            for (n, step), live in wanted.items()
        ]

        def work() -> list[tuple[str, int, PlotState | None, Any]]:  # on the drawing thread
            found = []
            for name, step, at, live, draw in jobs:
                if step not in self._reading.get(name, ()):  # moved on meanwhile: skip
                    continue
                try:
                    stored = read(name, at)
                    plot = None
                    if stored is not None:
                        plot = at_step(live, stored.frame, stored.id, stored.rows)
                    found.append((name, step, plot, draw(plot) if draw and plot else None))
                except Exception:  # unreadable (the store reports it), or undrawable
                    log.exception("plot %r at step %d could not be shown", name, step)
                    found.append((name, step, None, None))
            return found

        def done(found: Any) -> None:  # on the loop
            read_at: dict[int, set[str]] = {}
            if not isinstance(found, list):  # the job failed (a bug): show them as now
                found = [(name, step, None, None) for name, step in wanted]
            for name, step, plot, image in found:
                if step not in self._reading.get(name, ()):
                    continue  # the page moved on meanwhile
                self._reading[name].discard(step)
                kept = self._plots.setdefault(name, {})
                kept[step] = (wanted[(name, step)] if plot is None else plot, image)  # none: now
                while len(kept) > _KEPT:  # the steps farthest from this one go
                    del kept[max(kept, key=lambda kept_step: abs(kept_step - step))]
                read_at.setdefault(step, set()).add(name)
            for step, names in read_at.items():
                self._changed(names, step)

        self._submit(work, done)
