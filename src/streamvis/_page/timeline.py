"""A page's time control: a slider over its run's steps (or, for a run that sends none, the
seconds since its first frame), previous and next, play at a chosen speed, the arrow keys,
and ``live`` (on by default: the page follows the newest data).

Moving through steps leaves live mode; data keeps arriving and the slider's end keeps
growing; one click on ``live`` returns. The address bar follows the slider (``&step=K``)
without adding history entries. The browser moves the slider (play and the keys run there);
the server hears of each move through Bokeh's property sync and tells the page
(:func:`Timeline.on_move`) which step to show.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bokeh.layouts import row
from bokeh.models import CustomJS
from bokeh.models.widgets import Button, Div, Select, Slider, Toggle

from .._state import RunState

__all__ = ["SPEEDS", "Timeline"]

SPEEDS = ("1", "5", "10", "25", "50")  # steps (or tenths of a second) a second when playing
TIME_STEP = 0.1  # seconds a move (previous, next, play, keys) goes, by time
# The slider by steps, and by time (the page's JS reads its axis and unit of a move in tags).
_AXES: dict[bool, dict[str, Any]] = {
    False: dict(title="step", step=1, tags=["step", 1]),
    True: dict(title="seconds", step=0.001, tags=["time", TIME_STEP]),
}

# A person's moves of the slider show as ``value_throttled`` (the server's own, to follow
# live data, as ``value`` alone): set both, and leave live mode.
_MOVE_JS = """
function streamvis_move(slider, live, value) {
  value = Math.min(Math.max(value, slider.start), slider.end);
  if (value === slider.value && !live.active) return;
  live.active = false;
  slider.value = value;
  slider.value_throttled = value;
}
"""
# The slider's unit of a move (``tags``: its axis, "step" or "time", and that unit).
_UNIT_JS = "const unit = slider.tags[1] ?? 1;"
# Step the slider by ``by`` (previous / next).
_STEP_JS = _MOVE_JS + _UNIT_JS + "streamvis_move(slider, live, slider.value + by * unit);"
# The slider dragged: leave live mode.
_DRAG_JS = "live.active = false;"
# Play: move a step every 1/speed seconds until the end, then stop.
_PLAY_JS = """
if (window.streamvis_play) { clearInterval(window.streamvis_play); window.streamvis_play = null; }
if (!play.active) return;
live.active = false;
window.streamvis_play = setInterval(() => {
  if (slider.value >= slider.end) { play.active = false; return; }
  streamvis_move(slider, live, slider.value + unit);
}, 1000 / Number(speed.value));
"""
_PLAY_JS = _MOVE_JS + _UNIT_JS + _PLAY_JS
# The address says the step shown (none when live), without a new history entry.
_ADDRESS_JS = """
const url = new URL(window.location.href);
url.searchParams.delete("step");
url.searchParams.delete("time");
const axis = slider.tags[0] ?? "step";
const value = axis === "time" ? Math.round(slider.value * 1000) / 1000 : slider.value;
if (!live.active) url.searchParams.set(axis, String(value));
window.history.replaceState(null, "", url.toString());
"""
# The status line shows what the server says, written into its element only.
_SAY_JS = """
const view = Bokeh.index.find_one(line);
if (view?.markup_el) view.markup_el.textContent = status.text;
else line.text = status.text;
"""
# The arrow keys move one step back or on.
_KEYS_JS = (
    _MOVE_JS
    + """
if (window.streamvis_keys) return;
window.streamvis_keys = true;
document.addEventListener("keydown", (event) => {
  const by = {ArrowLeft: -1, ArrowRight: 1}[event.key];
  if (by === undefined || event.target.closest?.("input, select, textarea")) return;
  streamvis_move(slider, live, slider.value + by * (slider.tags[1] ?? 1));
});
"""
)


class Timeline:
    """The widgets of one page's time control, and what it shows."""

    def __init__(
        self, step: int | None, on_move: Callable[[int | None], None], time: float | None = None
    ) -> None:
        """At ``step``, or ``time`` (seconds after the run's first frame), or live."""
        self._on_move = on_move
        self._setting = False  # the server is moving the slider: not the person
        self.by_time = step is None and time is not None  # until the run says otherwise
        self.origin: float | None = None  # by time: when the run's first frame was made
        start: float = step if step is not None else (time or 0)
        self.slider = Slider(
            start=start, end=start + 1, value=start, **_AXES[self.by_time],
            name="streamvis:step", width=360, disabled=True,
        )  # fmt: skip
        live = step is None and time is None
        self.live = Toggle(label="live", active=live, name="streamvis:live", width=60)
        self.previous = Button(label="◀", name="streamvis:previous", width=40)
        self.next = Button(label="▶", name="streamvis:next", width=40)
        self.play = Toggle(label="play", name="streamvis:play", width=60)
        speeds: list[str | tuple[Any, str]] = [(s, f"{s}/s") for s in SPEEDS]
        self.speed = Select(options=speeds, value="10", name="streamvis:speed", width=80)
        # What the page says of its step (``status.text``) is a root of its own, never shown;
        # the page copies it into the status line (``line``), whose own new text would lay
        # the whole page out again (11-31 ms a step) and let go of the plots held for a step.
        self.status = Div(name="streamvis:status", visible=False)
        self.line = Div(
            name="streamvis:status-line", width=520, height=24, render_as_text=True,
            styles={"overflow": "hidden", "white-space": "nowrap"},
        )  # fmt: skip
        self.status.js_on_change(
            "text", CustomJS(args=dict(line=self.line, status=self.status), code=_SAY_JS)
        )
        models = dict(slider=self.slider, live=self.live, play=self.play, speed=self.speed)
        for button, by in ((self.previous, -1), (self.next, 1)):
            button.js_on_click(CustomJS(args=dict(models, by=by), code=_STEP_JS))
        self.play.js_on_change("active", CustomJS(args=models, code=_PLAY_JS))
        self.speed.js_on_change("value", CustomJS(args=models, code=_PLAY_JS))
        self.slider.js_on_change("value_throttled", CustomJS(args=models, code=_DRAG_JS))
        for model, attr in ((self.slider, "value_throttled"), (self.live, "active")):
            model.js_on_change(attr, CustomJS(args=models, code=_ADDRESS_JS))
        self.keys = CustomJS(args=models, code=_KEYS_JS)  # run on the document's ready event
        self.slider.on_change("value_throttled", self._moved)
        self.live.on_change("active", self._lived)
        widgets = [self.live, self.previous, self.slider, self.next, self.play, self.speed]
        self.model = row(*widgets, self.line, name="streamvis:timeline")

    def relaid(self) -> None:
        """The page is laid out anew (its models are out of the document): its status line
        starts with what the status says."""
        self.line.text = self.status.text

    @property
    def cursor(self) -> int | None:
        """The step the page shows (by time: milliseconds after the run's first frame), or
        None: live."""
        return None if self.live.active else self._cursor(self.slider.value)

    def _cursor(self, value: float) -> int:
        return round(value * 1000) if self.by_time else int(value)

    def ahead(self, cursor: int, moves: int) -> list[int]:
        """The cursors of the next ``moves`` moves while playing (none when not playing)."""
        unit = round(TIME_STEP * 1000) if self.by_time else 1
        return [cursor + k * unit for k in range(1, moves + 1)] if self.play.active else []

    def at(self, cursor: int, origin: float | None = None) -> int | float:
        """What the store reads a plot at for ``cursor``: a step, or a time (a float,
        seconds since the epoch: since ``origin``, a run's first frame, if given, else
        since the followed run's)."""
        if not self.by_time:
            return cursor
        return (origin if origin is not None else self.origin or 0.0) + cursor / 1000

    def follow(self, run: RunState, others: Sequence[RunState] = ()) -> None:
        """Take in the run's range of steps as it grows (widened to the ``others``' shown
        beside it); when live, stay at its end. Say when steps went back (a run resumed
        from a checkpoint, say): each step is kept."""
        steps, rewinds, rewound = _widest(run.steps, others), run.rewinds, run.rewound
        back = ""
        if rewinds and rewound is not None:
            times = "once" if rewinds == 1 else f"{rewinds} times"
            back = f" · steps went back {times}, last from {rewound[0]} to {rewound[1]}"
        if steps is None and run.times is not None:  # a run that sends no steps: by time
            self._by_time(run.times)
            return
        if steps is None:
            self.status.text = "live · no steps sent yet" if self.live.active else ""
            return
        if self.by_time:  # steps came: the run has them now
            self.by_time = False
            self._set(**_AXES[False])
        first, last = steps
        self._set(start=first, end=max(last, first + 1), disabled=False)
        if self.live.active:
            self._set(value=last)  # value alone: value_throttled would say a person moved it
            newest = run.last_step if run.last_step is not None else last
            self.status.text = f"live · step {newest}{back}"
        else:
            shown = int(self.slider.value)
            behind = f" · {last - shown} steps behind live" if last > shown else ""
            self.status.text = f"step {shown}{behind}{back}"

    def _by_time(self, times: tuple[float, float]) -> None:
        """Follow a run without steps by the seconds since its first frame."""
        if not self.by_time:
            self.by_time = True
            self._set(**_AXES[True])
        self.origin = times[0]
        length = round(times[1] - times[0], 3)
        self._set(start=0, end=max(length, TIME_STEP), disabled=False)
        if self.live.active:
            self._set(value=length)
            self.status.text = f"live · {length:.1f} s after the run's first frame (no steps)"
        else:
            shown = float(self.slider.value)
            behind = f" · {length - shown:.1f} s behind live" if length > shown else ""
            self.status.text = f"{shown:.1f} s after the run's first frame{behind}"

    def _set(self, **values: Any) -> None:
        """Move the slider as the server (its callbacks then ignore the move)."""
        changed = {k: v for k, v in values.items() if getattr(self.slider, k) != v}
        if changed:
            self._setting = True
            try:
                self.slider.update(**changed)
            finally:
                self._setting = False

    def _moved(self, attr: str, old: Any, new: Any) -> None:
        if not self._setting:
            self._on_move(self._cursor(new))

    def _lived(self, attr: str, old: Any, new: Any) -> None:
        self._on_move(None if new else self._cursor(self.slider.value))


def _widest(steps: tuple[int, int] | None, others: Sequence[RunState]) -> tuple[int, int] | None:
    """``steps`` widened to every other run's range of steps (None: none has steps yet)."""
    ranges = [r for r in (steps, *(other.steps for other in others)) if r is not None]
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)
