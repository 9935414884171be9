"""When a page's next update may go, with no Bokeh and no clock: the page's scheduler.

A page has one update in flight. Each update ends with a tick that the page echoes from the
animation frame that paints it; until the echo (or ``ACK_TIMEOUT``, for a page that never
echoes) changes only accumulate, so a slow browser gets fewer, larger updates rather than a
growing queue. Updates are at least ``interval`` apart, unless hurried (a person moved the
page). A plot's large replace may be held back (``defer``) and goes with the next update
after its time, or alone if none comes; the time it took a page to paint one is measured
from the echo of the tick that carried it.
Time comes in as ``now``; the session (:mod:`session`) arms Bokeh's callbacks for ``due``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ACK_TIMEOUT", "Echo", "PageClock"]

ACK_TIMEOUT = 1.0  # seconds to wait for a page's echo before sending the next update anyway
_LARGE_TICKS = 64  # sent ticks with large replaces remembered until echoed, at most


@dataclass
class Echo:
    """What a page's echo says: whether it painted the last update sent, on a GPU, and how
    long each large replace it carried took to reach the screen."""

    caught_up: bool
    gpu: bool
    costs: dict[str, float] = field(default_factory=dict)


class PageClock:
    """The update schedule of one page."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.dirty: set[str] = set()  # plots changed since the last update ('' = layout)
        self.deferred: dict[str, float] = {}  # large replaces held back: when they may go
        self.sent = self.echoed = 0  # ticks sent to the page, and echoed back
        self._sent_at = self._last_update = 0.0
        self._large: dict[int, tuple[float, list[str]]] = {}  # tick -> (sent at, plots)

    def changed(self, names: set[str]) -> None:
        """Plots changed (``''``: the layout)."""
        self.dirty |= names

    def hurry(self) -> None:
        """Let the next update go without waiting out the interval (which batches streamed
        data): a person moved the page, and waits to see it."""
        self._last_update = float("-inf")

    def due(self, now: float) -> float | None:
        """When the next update should run (None: nothing to send)."""
        if self.dirty:
            due = self._last_update + self.interval
        elif self.deferred:  # goes with the next change; alone only if none comes soon
            due = min(self.deferred.values()) + self.interval
        else:
            return None
        if self.waiting(now):  # the echo comes sooner, and runs it
            due = max(due, self._sent_at + ACK_TIMEOUT)
        return due

    def waiting(self, now: float) -> bool:
        """Whether the page is still painting the last update (and has not timed out)."""
        return self.echoed < self.sent and now - self._sent_at < ACK_TIMEOUT

    def begin(self, now: float) -> set[str] | None:
        """Start an update: the plots to bring up to date (the held-back ones now due too);
        None if the page is still painting the last one."""
        if self.waiting(now):
            return None
        due = {name for name, at in self.deferred.items() if at <= now}
        for name in due:
            del self.deferred[name]
        dirty, self.dirty = self.dirty | due, set()
        return dirty

    def defer(self, name: str, wait: float, now: float) -> None:
        """Hold a plot's large replace back for ``wait`` seconds."""
        self.deferred[name] = now + wait

    def send(self, now: float, large: list[str]) -> int:
        """An update goes out, carrying the large replaces of ``large``; its tick."""
        self._last_update = self._sent_at = now
        self.sent += 1
        if large:
            self._large[self.sent] = (now, large)
            if len(self._large) > _LARGE_TICKS:  # a page that never echoes
                del self._large[next(iter(self._large))]
        return self.sent

    def echo(self, text: str, now: float) -> Echo | None:
        """The page's echo, ``"tick gpu|cpu [ready]"``; None if it is not one. A ``ready``
        echo (the page loaded) times nothing."""
        try:
            tick, gpu, *ready = text.split()
            tick_n = int(tick)
        except ValueError:
            return None
        self.echoed = max(self.echoed, tick_n)
        costs: dict[str, float] = {}
        for sent in [t for t in self._large if t <= tick_n]:
            sent_at, names = self._large.pop(sent)
            if sent == tick_n and not ready:  # decoding, applying and painting it
                costs.update(dict.fromkeys(names, now - sent_at))
        return Echo(self.echoed >= self.sent, gpu == "gpu", costs)
