"""A page's time control: a slider over its run's steps, previous and next, play at a chosen
speed, the arrow keys, and ``live`` (on by default: the page follows the newest data).

Moving through steps leaves live mode; data keeps arriving and the slider's end keeps
growing; one click on ``live`` returns. The address bar follows the slider (``&step=K``)
without adding history entries. The browser moves the slider (play and the keys run there);
the server hears of each move through Bokeh's property sync and tells the page
(:func:`Timeline.on_move`) which step to show.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bokeh.layouts import row
from bokeh.models import CustomJS
from bokeh.models.widgets import Button, Div, Select, Slider, Toggle

from .._state import RunState

__all__ = ["SPEEDS", "Timeline"]

SPEEDS = ("1", "5", "10", "25", "50")  # steps a second when playing

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
# Step the slider by ``by`` (previous / next).
_STEP_JS = _MOVE_JS + "streamvis_move(slider, live, slider.value + by);"
# The slider dragged: leave live mode.
_DRAG_JS = "live.active = false;"
# Play: move a step every 1/speed seconds until the end, then stop.
_PLAY_JS = """
if (window.streamvis_play) { clearInterval(window.streamvis_play); window.streamvis_play = null; }
if (!play.active) return;
live.active = false;
window.streamvis_play = setInterval(() => {
  if (slider.value >= slider.end) { play.active = false; return; }
  streamvis_move(slider, live, slider.value + 1);
}, 1000 / Number(speed.value));
"""
_PLAY_JS = _MOVE_JS + _PLAY_JS
# The address says the step shown (none when live), without a new history entry.
_ADDRESS_JS = """
const url = new URL(window.location.href);
if (live.active) url.searchParams.delete("step");
else url.searchParams.set("step", String(slider.value));
window.history.replaceState(null, "", url.toString());
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
  streamvis_move(slider, live, slider.value + by);
});
"""
)


class Timeline:
    """The widgets of one page's time control, and what it shows."""

    def __init__(self, step: int | None, on_move: Callable[[int | None], None]) -> None:
        self._on_move = on_move
        self._setting = False  # the server is moving the slider: not the person
        start = step if step is not None else 0
        self.slider = Slider(
            start=start, end=start + 1, value=start, step=1, title="step",
            name="streamvis:step", width=360, disabled=True,
        )  # fmt: skip
        self.live = Toggle(label="live", active=step is None, name="streamvis:live", width=60)
        self.previous = Button(label="◀", name="streamvis:previous", width=40)
        self.next = Button(label="▶", name="streamvis:next", width=40)
        self.play = Toggle(label="play", name="streamvis:play", width=60)
        speeds: list[str | tuple[Any, str]] = [(s, f"{s}/s") for s in SPEEDS]
        self.speed = Select(options=speeds, value="10", name="streamvis:speed", width=80)
        self.status = Div(name="streamvis:status")
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
        self.model = row(*widgets, self.status, name="streamvis:timeline")

    @property
    def cursor(self) -> int | None:
        """The step the page shows, or None: live."""
        return None if self.live.active else int(self.slider.value)

    def follow(self, run: RunState) -> None:
        """Take in the run's range of steps as it grows; when live, stay at its end. Say
        when steps went back (a run resumed from a checkpoint, say): each step is kept."""
        steps, rewinds, rewound = run.steps, run.rewinds, run.rewound
        back = ""
        if rewinds and rewound is not None:
            times = "once" if rewinds == 1 else f"{rewinds} times"
            back = f" · steps went back {times}, last from {rewound[0]} to {rewound[1]}"
        if steps is None:
            self.status.text = "live · no steps sent yet" if self.live.active else ""
            return
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
            self._on_move(int(new))

    def _lived(self, attr: str, old: Any, new: Any) -> None:
        self._on_move(None if new else int(self.slider.value))
