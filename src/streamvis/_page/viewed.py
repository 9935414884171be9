"""What a page views: which runs, which of their plots, and at which step (live, or a past
one), read from its address, and what its first line says of it. Pure: the session shows
it, the hub sends it the runs' changes.

``/?run=a&run=b&plot=loss&step=57`` views runs ``a`` and ``b``, only their plot ``loss``, at
step 57 (``&time=12.5``: 12.5 s after the run's first frame, for a run that sends no
steps; ``&x=since``: line plots by the steps since each run's first; ``&x=time``: by the
seconds since each run's start, when each step was made). The first run leads:
its layout places the plots first, its steps set the time control's, and the others are
shown at the same step (by time: as long after their own first frame).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["X_AXES", "Viewed"]

X_AXES = {  # line plots' x
    "step": "step",
    "since": "steps since each run's first",
    "time": "seconds since each run's start",
}


@dataclass(frozen=True)
class Viewed:
    """Runs (at least one), the plots to show (None: every plot laid out), and the time
    cursor (None: live, following the newest data; else the step to show)."""

    runs: tuple[str, ...]
    plots: frozenset[str] | None = None
    step: int | None = None
    time: float | None = None  # seconds after the run's first frame (a run without steps)
    x: str = "step"  # line plots' x: the step, "since" each run's first, or "time" since start
    ignored: tuple[str, ...] = ()  # parts of the address that mean nothing, to say so

    @property
    def run(self) -> str:
        """The run a page shows."""
        return self.runs[0]

    @property
    def live(self) -> bool:
        return self.step is None and self.time is None

    def shows(self, plot: str) -> bool:
        """Whether the page shows plot ``plot`` (of any of its runs)."""
        return self.plots is None or plot in self.plots

    def header(self, others: list[str], folded: int, blind: bool) -> str:
        """The page's first line: the runs, the ``others`` it can switch to, and what of the
        view it cannot show (a past step, if ``blind``: no history kept); the replaces its
        clients ``folded`` (their steps are not kept)."""
        links = ", ".join(f'<a href="/?run={html.escape(r)}">{html.escape(r)}</a>' for r in others)
        shown = ", ".join(f"<b>{html.escape(run)}</b>" for run in self.runs)
        text = f"<b>streamvis</b> &middot; run{'s' if len(self.runs) > 1 else ''} {shown}"
        text += f" &middot; other runs: {links}" if links else ""
        if folded:
            text += (
                f"<br>{folded} replaces were folded into later ones before they were "
                "sent: the link or the server fell behind, so their steps are not kept."
            )
        if not self.live and blind:
            text += "<br>This server keeps no history (--no_persist): the page shows it live."
        if self.ignored:
            text += "<br>Ignored in the address: " + html.escape(", ".join(self.ignored))
        return text

    @classmethod
    def from_query(cls, args: Mapping[str, Sequence[bytes | str]], default_run: str) -> Viewed:
        """The view an address's query asks for (``run``, ``plot``, ``step``, each as often as
        wanted; the last step counts). A step that is not a whole number is ignored, and
        noted, so that a bad link still opens and says what was wrong with it."""
        runs = tuple(dict.fromkeys(r for r in _texts(args.get("run", ())) if r))
        plots = frozenset(p for p in _texts(args.get("plot", ())) if p) or None
        steps, ignored = [], []
        for text in _texts(args.get("step", ())):
            if text.strip().lstrip("-").isdigit():
                steps.append(int(text))
            else:
                ignored.append(f"step={text!r} (not a whole number)")
        times = []
        for text in _texts(args.get("time", ())):
            try:
                times.append(float(text))
            except ValueError:
                ignored.append(f"time={text!r} (not a number of seconds)")
        times = [t for t in times if math.isfinite(t)]
        step, time = steps[-1] if steps else None, times[-1] if times else None
        x = "step"
        for text in _texts(args.get("x", ())):
            if text in X_AXES:
                x = text
            else:
                ignored.append(f"x={text!r} (one of {', '.join(X_AXES)})")
        return cls(runs or (default_run,), plots, step, time, x, tuple(ignored))


def _texts(values: Sequence[bytes | str]) -> list[str]:
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]
