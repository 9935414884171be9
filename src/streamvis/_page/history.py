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

    @property
    def blind(self) -> bool:
        """Whether there is no store to read the past from (every step shows live)."""
        return self._read is None

    def at(self, name: str, live: PlotState, step: int | None) -> PlotState | None:
        """What the page shows of plot ``name`` at ``step`` (None: live): ``live`` itself
        when live, for an append plot, or without a store; the plot as the stored frame
        left it once read; None while it is being read (the page keeps what it shows)."""
        if step is None or live.spec.append or self._read is None:
            return live
        found = self._plots.get(name)
        if found is not None and found[0] == step:
            return found[1]
        if self._reading.get(name) != step:
            self._reading[name] = step
            self._start(name, live, step)
        return None

    def _start(self, name: str, live: PlotState, step: int) -> None:
        read = self._read
        assert read is not None

        def done(result: Any) -> None:  # on the loop
            if self._reading.get(name) != step:
                return  # the page moved on meanwhile
            del self._reading[name]
            # None then, or unreadable (the store reports it): the plot as it is now.
            stored = isinstance(result, Stored)
            plot = at_step(live, result.frame, result.id) if stored else live
            self._plots[name] = (step, plot)
            self._changed({name})

        self._submit(lambda: read(name, step), done)
