"""What a page shows of its run at a step: each replace plot as its latest frame at or
before the step left it, read from the store off the loop, and kept while the step stays.

Append plots show every row they hold, whatever the step (line plots mark the step with a
cursor); a replace plot with no frame at or before the step (it began later) shows what it
shows now.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._plotstate import PlotState, at_step
from .._runstore import Stored

__all__ = ["PastPlots", "Read", "Submit"]

Read = Callable[[str, int], "Stored | None"]  # (plot, step) -> its frame then, from the store
# Run the first callable off the loop, then the second on it with what it returned (or the
# exception it raised).
Submit = Callable[[Callable[[], Any], Callable[[Any], None]], None]


class PastPlots:
    """A page's plots at its step, as they are read."""

    def __init__(self, read: Read | None, submit: Submit, changed: Callable[[set[str]], None]):
        self._read, self._submit, self._changed = read, submit, changed
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
        if step is None or live.spec.append or self._read is None:
            return live
        found = self._plots.get(name)
        if found is not None and found[0] == step:
            return found[1]
        if self._reading.get(name) != step:
            self._wanted[name] = (step, live)
        return None

    def start(self) -> None:
        """Read what :meth:`at` lacked since the last call, in one job: a step's plots come
        together, in one update of the page."""
        wanted, self._wanted = self._wanted, {}
        read = self._read
        if not wanted or read is None:
            return
        self._reading.update({name: step for name, (step, _) in wanted.items()})

        def work() -> dict[str, Stored | Exception | None]:  # on the drawing thread
            found: dict[str, Stored | Exception | None] = {}
            for name, (step, _) in wanted.items():
                try:
                    found[name] = read(name, step)
                except Exception as exc:  # unreadable: reported by the store
                    found[name] = exc
            return found

        def done(found: Any) -> None:  # on the loop
            changed = set()
            for name, (step, live) in wanted.items():
                if self._reading.get(name) != step:
                    continue  # the page moved on meanwhile
                del self._reading[name]
                result = found.get(name) if isinstance(found, dict) else found
                # None then, or unreadable: the plot as it is now.
                plot = live
                if isinstance(result, Stored):
                    plot = at_step(live, result.frame, result.id)
                self._plots[name] = (step, plot)
                changed.add(name)
            if changed:
                self._changed(changed)

        self._submit(work, done)
