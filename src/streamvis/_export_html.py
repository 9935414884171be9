"""A run's dashboard as one self-contained HTML file: BokehJS inlined, no server, no network,
with a time control over the run's kept steps that moves every plot in step.

The figures are the live page's (:func:`_page.figures.make_figure`), drawn as points even
where a page would show an image. Each plot's frames travel once, as one source of all
their rows; a step shows, of each plot, the rows of its latest frame at or before it (an
append plot: all its rows up to there), sliced in the browser. To stay shareable the file
keeps at most ``max_bytes`` of frames: beyond that, steps are thinned evenly (the newest
always kept) and the page says so.
"""

from __future__ import annotations

import collections
import html
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from bokeh.embed import file_html
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, CustomJS, GridBox
from bokeh.models.annotations import Span
from bokeh.models.widgets import Button, Div, Slider
from bokeh.resources import INLINE

from ._page.figures import make_figure
from ._page.shows import Points
from ._plotstate import PlotState, replaced
from ._readrun import PlotData, RunData
from ._specs import Cell

__all__ = ["MAX_BYTES", "write_html"]

MAX_BYTES = 20 * 2**20  # what a file takes, at most, before steps are thinned
MAX_MOMENTS = 10_000  # places on its time control, at most


@dataclass
class _Rows:
    """A replace or append plot's frames as one source of rows: for each of its frames, the
    rows a page shows once it is the latest (``starts[i]`` to ``ends[i]``)."""

    plot: PlotData
    state: PlotState | None  # its last frame's, for the figure
    columns: dict[str, np.ndarray]
    starts: list[int]
    ends: list[int]
    sizes: list[int]  # bytes of each frame's own rows

    def shown(self, frame: int | None) -> tuple[int, int]:
        return (0, 0) if frame is None else (self.starts[frame], self.ends[frame])


def write_html(run: RunData, file: IO[bytes], max_bytes: int = MAX_BYTES) -> None:
    """Write run ``run``'s dashboard to ``file`` as one self-contained HTML page of at most
    about ``max_bytes`` (at least its last step, whatever that takes)."""
    moments, by_step, made = _moments(run)
    lines = {  # the line plots, replayed once: each page drawn below shows them whole
        name: collections.deque(_replay(plot), maxlen=1)[0][0]
        for name, plot in run.plots.items() if plot.kind == "tandem_lines" and plot.arrays
    }  # fmt: skip
    rows = {n: _rows(p) for n, p in run.plots.items() if n not in lines and p.arrays}
    latest = {}
    for name, plot_rows in rows.items():  # a plot without steps beside others: by time
        stepped = by_step and not np.isnan(plot_rows.plot.steps).all()
        keys = plot_rows.plot.steps if stepped else plot_rows.plot.times
        latest[name] = _latest(keys, moments if stepped else made)
    plan = _Plan(run, moments, by_step, lines, rows, latest)
    last = list(range(len(moments)))[-1:]
    least = _page(plan, last)
    points = 8 * sum(s.lines * len(s.data) for s in lines.values()) * 4 // 3  # float32 x, y
    if len(least) > max_bytes and len(least) - points < max_bytes:  # lines make it too big
        # Each line keeps its least and greatest value of every ``bucket`` points, in half
        # of what the rest leaves.
        allowed = max(max_bytes - (len(least) - points), max_bytes // 4)
        plan.bucket = max(-(-4 * points // allowed), 3)
        least = _page(plan, last)
    if len(least) >= max_bytes or len(moments) < 2:
        file.write(least)
        return
    # What the least page holds but its last step's frames (BokehJS, lines, append plots)
    # stays; the rest of the budget takes frames, at the 4/3 that base64 makes of them.
    budget = (max_bytes - len(least)) * 3 // 4 + _bytes(rows, latest, last)
    per_moment = 8 + 8 * len(rows)  # its place, and each plot's rows then (arrays)
    kept = _thinned(len(moments), lambda k: _bytes(rows, latest, k) + per_moment * len(k),
                    budget, MAX_MOMENTS)  # fmt: skip
    file.write(_page(plan, kept))


@dataclass
class _Plan:
    """What a page is made of: the run's moments (steps, or times), its line plots and its
    other plots' rows, the frame each shows at each moment, and how lines are thinned."""

    run: RunData
    moments: list[float]
    by_step: bool
    lines: dict[str, PlotState]  # each line plot as its last frame left it
    rows: dict[str, _Rows]
    latest: dict[str, list[int | None]]
    bucket: int = 1  # lines: the least and greatest value of every ``bucket`` points


def _page(plan: _Plan, kept: list[int]) -> bytes:
    """The page of the ``kept`` moments (indices into ``plan.moments``), as bytes."""
    run, moments, by_step, latest = plan.run, plan.moments, plan.by_step, plan.latest
    origin = moments[0] if moments else 0.0
    where = [moments[i] if by_step else moments[i] - origin for i in kept]
    slider = Slider(start=0, end=max(len(kept) - 1, 1), value=len(kept) - 1, step=1,
                    title="moment", width=360, name="streamvis:step",
                    disabled=len(kept) < 2)  # fmt: skip
    label = Div(text=_at(where[-1], by_step) if where else "no steps kept", name="streamvis:at")
    cells: dict[str, Any] = {}
    sliced, spans = [], []
    for name, plot_rows in plan.rows.items():
        now, frames, starts, ends = _compact(plot_rows, [latest[name][i] for i in kept])
        fig, source = _figure(name, run, plot_rows.state, now)
        cells[name] = fig
        bounds = [np.array(starts, np.int32), np.array(ends, np.int32)]  # gzipped arrays
        sliced.append([source, ColumnDataSource(data=frames), *bounds])
    for name, state in plan.lines.items():
        at = where[-1] if where and by_step else None
        fig, span = _line_figure(name, run, state, at, plan.bucket)
        cells[name] = fig
        spans += [span] if span is not None else []
    move = CustomJS(args=dict(slider=slider, sliced=sliced, spans=spans,
                              where=np.array(where, np.float64),
                              label=label, by_step=by_step), code=_MOVE_JS)  # fmt: skip
    slider.js_on_change("value", move)
    play = Button(label="play", width=70, name="streamvis:play")
    play.js_on_event("button_click", CustomJS(args=dict(slider=slider, button=play),
                                              code=_PLAY_JS))  # fmt: skip
    header = Div(text=_header(run, len(kept), len(moments), plan.bucket), name="streamvis:header")
    page = column(header, row(slider, play, label), _grid(cells, run.cells))
    return file_html(page, resources=INLINE, title=f"streamvis · {run.name}").encode("utf-8")


def _moments(run: RunData) -> tuple[list[float], bool, list[float]]:
    """The run's steps, in order (by step: True), and until when each lasted (the next's
    first frame); or, for a run that sent none, the times of its frames (twice)."""
    steps = np.concatenate([p.steps for p in run.plots.values()] or [np.empty(0)])
    times = np.concatenate([p.times for p in run.plots.values()] or [np.empty(0)])
    stepped = ~np.isnan(steps)
    if not stepped.any():
        moments = np.unique(times).tolist()
        return moments, False, moments
    order = np.lexsort((times[stepped], steps[stepped]))  # by step, then time
    unique, first = np.unique(steps[stepped][order], return_index=True)
    reached = np.maximum.accumulate(times[stepped][order][first])
    # A step lasts until the next is reached (the last: for ever).
    until = np.append(np.nextafter(reached[1:], -np.inf), np.inf)
    low = run.steps[0]  # append plots' frames before it: only what they held at it
    shown = unique >= (low if low is not None else -np.inf)
    return unique[shown].tolist(), True, until[shown].tolist()


def _latest(keys: np.ndarray, moments: Sequence[float]) -> list[int | None]:
    """For each moment, the frame (by its step or time, ``keys``) shown then: the latest at
    or before it (the last to arrive among those of the greatest), or None."""
    usable = np.flatnonzero(~np.isnan(keys))
    order = usable[np.lexsort((usable, keys[usable]))]  # by key, then arrival
    at = np.searchsorted(keys[order], np.asarray(moments), side="right") - 1
    return [int(order[i]) if i >= 0 else None for i in at.tolist()]


def _rows(plot: PlotData) -> _Rows:
    """A plot's frames as rows, each frame's as a page shows it after that frame: a replace
    starts a segment of rows, its appends extend it (each frame drawn as it asked)."""
    segments: list[dict[str, Any]] = []
    starts, ends, added, state, base = [], [], [], None, 0
    for now, before in _replay(plot):
        if now is not state:  # a replace began a segment
            if state is not None:
                segments.append(Points().data(state))
                base += len(state.data)
            state = now
        starts.append(base)
        ends.append(base + len(state.data))
        added.append(len(state.data) - before)
    if state is not None:
        segments.append(Points().data(state))
    names = segments[-1].keys() if segments else ()
    columns = {k: np.concatenate([_column(seg, k) for seg in segments]) for k in names}
    per_row = sum(v.nbytes for v in columns.values()) / max(ends[-1] if ends else 0, 1)
    return _Rows(plot, state, columns, starts, ends, [int(n * per_row) for n in added])


def _replay(plot: PlotData) -> Iterator[tuple[PlotState, int]]:
    """The plot's state after each of its frames, each drawn as it asked (a replace makes
    a new state, an append extends it), and its rows before that frame."""
    state = None
    for spec, appends, arrays in zip(plot.specs, plot.appends, plot.arrays, strict=True):
        if state is None or not appends:
            state = replaced(plot.name, state, spec, arrays, 0)
            state.fig_kwargs = dict(plot.fig_kwargs or {})
            yield state, 0
        else:
            before = len(state.data)
            state.append(spec, arrays)
            yield state, before


def _column(segment: dict[str, Any], name: str) -> np.ndarray:
    """A segment's column ``name``; zeros where it had none (a replace without color)."""
    if name in segment:
        return np.asarray(segment[name])
    return np.zeros(len(np.asarray(next(iter(segment.values()), ()))))


def _bytes(rows: dict[str, _Rows], latest: dict[str, list[int | None]], kept: list[int]) -> int:
    """Bytes of the replace frames the ``kept`` moments show."""
    total = 0
    for name, plot_rows in rows.items():
        if not any(plot_rows.plot.appends):
            shown = {latest[name][i] for i in kept} - {None}
            total += sum(plot_rows.sizes[f] for f in shown if f is not None)
    return total


def _thinned(count: int, cost: Any, max_bytes: int, most: int) -> list[int]:
    """The most moments (``most`` at most), evenly spread with the last kept, whose frames
    fit ``max_bytes``; the last alone if none do."""

    def spread(k: int) -> list[int]:
        if k <= 1:
            return [count - 1]
        return sorted({round(i * (count - 1) / (k - 1)) for i in range(k)})

    if count == 0 or (count <= most and cost(list(range(count))) <= max_bytes):
        return list(range(count))
    low, high = 1, min(count, most) + 1  # low always fits (or is the least there is)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if cost(spread(middle)) <= max_bytes else (low, middle)
    return spread(low)


def _compact(
    plot_rows: _Rows, shown: list[int | None]
) -> tuple[dict[str, Any], dict[str, Any], list[int], list[int]]:
    """The rows the shown frames need (the rest dropped), and where each moment's are."""
    if any(plot_rows.plot.appends):  # an append plot: every row up to the last shown
        bounds = [plot_rows.shown(f) for f in shown]
        first, end = bounds[-1] if bounds else (0, 0)
        now = {k: v[first:end] for k, v in plot_rows.columns.items()}
        return now, plot_rows.columns, [a for a, _ in bounds], [b for _, b in bounds]
    used = sorted({f for f in shown if f is not None})
    parts = {f: (plot_rows.starts[f], plot_rows.ends[f]) for f in used}
    columns = {k: np.concatenate([v[a:b] for a, b in parts.values()] or [v[:0]])
               for k, v in plot_rows.columns.items()}  # fmt: skip
    offsets, at = {}, 0
    for f, (a, b) in parts.items():
        offsets[f] = (at, at + b - a)
        at += b - a
    bounds = [offsets.get(f, (0, 0)) if f is not None else (0, 0) for f in shown]
    last = bounds[-1] if bounds else (0, 0)
    now = {k: v[last[0] : last[1]] for k, v in columns.items()}
    return now, columns, [a for a, _ in bounds], [b for _, b in bounds]


def _figure(
    name: str, run: RunData, state: PlotState | None, data: dict[str, Any]
) -> tuple[Any, ColumnDataSource]:
    """A replace or append plot's figure, showing ``data``; and its source."""
    cell = (run.cells or {}).get(name, (0, 0, 1, 1))
    fig, source = make_figure(name, cell, state, dict(data), points=True)
    assert source is not None  # a plot with data has a source
    return fig, source


def _line_figure(
    name: str, run: RunData, state: PlotState, at: float | None, bucket: int
) -> tuple[Any, Any]:
    """A line plot's figure, every point of it (or each line's least and greatest of every
    ``bucket``), with a cursor at the moment shown."""
    cell = (run.cells or {}).get(name, (0, 0, 1, 1))
    data = Points().data(state)
    if bucket > 1:
        kept = [_extremes(ys, bucket) for ys in data["ys"]]
        data["xs"] = [xs[k] for xs, k in zip(data["xs"], kept, strict=True)]
        data["ys"] = [ys[k] for ys, k in zip(data["ys"], kept, strict=True)]
    fig, _ = make_figure(name, cell, state, data, points=True)
    if at is None:
        return fig, None
    span = Span(location=at, dimension="height", line_dash="dashed", line_color="#555555",
                name=f"{name}:cursor")  # fmt: skip
    fig.add_layout(span)
    return fig, span


def _extremes(values: np.ndarray, bucket: int) -> np.ndarray:
    """The indices of the least and greatest of every ``bucket`` values, in order (NaN:
    neither, unless a bucket is all NaN)."""
    values = np.asarray(values, np.float64)
    count = -(-len(values) // bucket) * bucket
    padded = np.full(count, np.nan)
    padded[: len(values)] = values
    low = np.where(np.isnan(padded), np.inf, padded).reshape(-1, bucket).argmin(axis=1)
    high = np.where(np.isnan(padded), -np.inf, padded).reshape(-1, bucket).argmax(axis=1)
    starts = np.arange(0, count, bucket)
    found = np.unique(np.concatenate([starts + low, starts + high]))
    return found[found < len(values)]


def _grid(cells: dict[str, Any], layout: dict[str, Cell] | None) -> Any:
    """The figures where the run's layout put them (without one: in a row each)."""
    if not cells:
        return Div(text="<p>This run has no plots.</p>")
    if layout is None:
        return column(*cells.values())
    placed: list[Any] = [(fig, *layout[name]) for name, fig in cells.items() if name in layout]
    rest = [fig for name, fig in cells.items() if name not in layout]
    grid = [GridBox(children=placed, name="streamvis:grid")] if placed else []
    return column(*grid, *rest)


def _header(run: RunData, kept: int, moments: int, bucket: int) -> str:
    text = f"<b>streamvis</b> &middot; run <b>{html.escape(run.name)}</b> (exported)"
    if kept < moments:
        text += (
            f"<br>{kept} of its {moments} steps are kept here, evenly spread, to keep the "
            "file small enough to share."
        )
    if bucket > 1:
        text += (
            f"<br>Line plots show each line's least and greatest value of every {bucket} "
            "points, to keep the file small enough to share."
        )
    return text


def _at(where: float, by_step: bool) -> str:
    if by_step:
        return f"step {int(where)}" if float(where).is_integer() else f"step {where}"
    return f"{where:.1f} s after the run's first frame"


_MOVE_JS = """
const i = slider.value;
for (const [source, frames, starts, ends] of sliced) {
  const data = {};
  for (const key of frames.columns()) data[key] = frames.data[key].slice(starts[i], ends[i]);
  source.data = data;
}
for (const span of spans) span.location = where[i];
label.text = by_step ? `step ${where[i]}` : `${where[i].toFixed(1)} s after the run's first frame`;
"""

_PLAY_JS = """
if (window._streamvis_play) {
  clearInterval(window._streamvis_play); window._streamvis_play = null; button.label = "play";
  return;
}
if (slider.value >= slider.end) slider.value = slider.start;
button.label = "pause";
window._streamvis_play = setInterval(() => {
  if (slider.value >= slider.end) {
    clearInterval(window._streamvis_play); window._streamvis_play = null; button.label = "play";
  } else slider.value = slider.value + 1;
}, 100);
"""
