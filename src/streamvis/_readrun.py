"""A stored run in Python: :func:`read_run` gives every plot's kept frames as numpy arrays,
with their steps and times, and :func:`run_summaries` what ``streamvis runs`` lists.

It reads a run's database read-only, beside a server that may be writing it (SQLite's
write-ahead log lets each statement read one consistent snapshot), and changes nothing:
no file is created, moved or removed.
"""

from __future__ import annotations

import importlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import ArgumentError, StoreError
from ._history import READ, History
from ._protocol import made_at
from ._runstore import SEGMENTS
from ._segments import Segments
from ._specs import Cell, PlotSpec, check_layout
from ._store import FOLDER, SUFFIX

__all__ = [
    "PROGRESS_FRAMES",
    "PlotData",
    "RunData",
    "RunSummary",
    "open_history",
    "read_run",
    "run_summaries",
]

PROGRESS_FRAMES = 20_000  # frames read between reports of progress
_ALL = slice(None)


@dataclass(frozen=True)
class PlotData:
    """One plot's kept frames, oldest first: each frame's step (NaN: none given), when it
    was made (seconds since the epoch, by the client's clock, else at arrival), and its
    arrays as sent (``tandem_lines``: ``(x, ys)``; the others: ``(data,)``)."""

    name: str
    kind: str
    steps: np.ndarray  # float64, one per frame
    times: np.ndarray  # float64, one per frame
    arrays: tuple[tuple[np.ndarray, ...], ...]
    labels: tuple[str, ...] | None = None  # tandem_lines: its lines' names, if given
    fig_kwargs: dict[str, Any] | None = None  # its figure's settings, as last sent
    appends: tuple[bool, ...] = ()  # whether each frame added to the plot (else replaced it)
    spec: PlotSpec | None = field(default=None, repr=False)  # as its last frame asked

    @property
    def lines(self) -> list[str]:
        """A line plot's lines' names: its labels, else their numbers."""
        count = max((a[1].size for a in self.arrays), default=0)
        labels = self.labels or ()
        return [labels[k] if k < len(labels) else str(k) for k in range(count)]

    def values(self, frames: slice = _ALL) -> np.ndarray:
        """A line plot's values, a row per frame (of ``frames``) and a column per line (NaN
        where a frame had fewer lines)."""
        chosen = self.arrays[frames]
        out = np.full((len(chosen), len(self.lines)), np.nan)
        for row, (_, ys) in enumerate(chosen):
            out[row, : ys.size] = ys.reshape(-1)
        return out

    def x(self, frames: slice = _ALL) -> np.ndarray:
        """A line plot's x of each frame (of ``frames``): its step, mostly."""
        return np.array([float(a[0].reshape(-1)[0]) for a in self.arrays[frames]], np.float64)

    def to_pandas(self) -> Any:
        """A line plot in long form, a row per point: ``plot, line, step, time, value``
        (the step: the frame's, else its x). Needs pandas."""
        try:
            pandas = importlib.import_module("pandas")
        except ImportError as exc:
            raise ArgumentError("to_pandas() needs pandas: pip install pandas") from exc
        return pandas.DataFrame(long_form(self))


@dataclass(frozen=True)
class RunData:
    """A run's plots as stored, by name, in the order each first appeared."""

    name: str
    plots: dict[str, PlotData]
    cells: dict[str, Cell] | None = None  # its last layout: plot -> (row, col, rows, cols)


def long_form(plot: PlotData, frames: slice = _ALL) -> dict[str, np.ndarray]:
    """A line plot's points (of ``frames``) as columns ``plot, line, step, time, value`` (a
    row per point, by frame then line); raises ArgumentError for other plots."""
    if plot.kind != "tandem_lines":
        raise ArgumentError(f"plot {plot.name!r} is a {plot.kind} plot, not a line plot")
    values, lines = plot.values(frames), len(plot.lines)
    steps = np.where(np.isnan(plot.steps[frames]), plot.x(frames), plot.steps[frames])
    keep = _sent(plot.arrays[frames], values)  # not the lines a frame lacked
    return {
        "plot": np.full(values.size, plot.name, dtype=object)[keep],
        "line": np.tile(np.array(plot.lines, dtype=object), len(values))[keep],
        "step": np.repeat(steps, lines)[keep],
        "time": np.repeat(plot.times[frames], lines)[keep],
        "value": values.reshape(-1)[keep],
    }


def _sent(arrays: tuple[tuple[np.ndarray, ...], ...], values: np.ndarray) -> np.ndarray:
    """Which cells of ``values`` (frames x lines, flattened) a frame sent (a NaN sent stays)."""
    sent = np.zeros(values.shape, bool)
    for row, (_, ys) in enumerate(arrays):
        sent[row, : ys.size] = True
    return sent.reshape(-1)


class _ReadOnly(History):
    """A run's history opened for reading only: the database in read-only mode, a
    connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._segments = Segments(path.with_name(path.name + SEGMENTS))
        self._local = threading.local()

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        return db

    def plot_names(self) -> list[str]:
        """The run's plots, in the order each first appeared."""
        query = "SELECT plot, min(id) AS first FROM frames WHERE op = 'plot' GROUP BY plot"
        return [name for name, _ in sorted(self._reader().execute(query), key=lambda r: r[1])]

    def layout(self) -> dict[str, Cell] | None:
        """The run's last layout (None: it sent none, or cleared it since)."""
        rows = self._reader().execute(
            f"{READ} WHERE op IN ('layout', 'clear') ORDER BY id DESC LIMIT 1"
        )
        last = next(self._stored(rows), None)
        if last is None or last.frame.op != "layout":
            return None
        return check_layout(last.frame.opts.get("cells", {}))


def open_history(data_dir: str | Path, run: str) -> History:
    """A stored run's history, for reading only; ArgumentError if there is no such run."""
    path = Path(data_dir) / FOLDER / f"{run}{SUFFIX}"
    if not path.is_file():
        known = ", ".join(_runs(Path(data_dir))) or "none"
        raise ArgumentError(f"no run {run!r} in {str(data_dir)!r} (runs there: {known})")
    return _ReadOnly(path)


def read_run(
    data_dir: str | Path, run: str, plots: Sequence[str] | None = None,
    steps: tuple[int | None, int | None] = (None, None),
    progress: Callable[[str, int], None] | None = None,
) -> RunData:  # fmt: skip
    """Run ``run`` of the server data folder ``data_dir``: its plots (or those named in
    ``plots``), each with its kept frames of steps in ``steps`` (inclusive; None: open),
    arrays as sent. Reads while a server runs, without disturbing it. ``progress`` is
    told a plot's name and its frames read so far, every PROGRESS_FRAMES (and at the end
    of a plot of as many)."""
    history = open_history(data_dir, run)
    assert isinstance(history, _ReadOnly)
    try:
        names = history.plot_names()
        missing = [p for p in plots or () if p not in names]
        if missing:
            raise ArgumentError(
                f"run {run!r} has no plot {', '.join(map(repr, missing))} "
                f"(its plots: {', '.join(names) or 'none'})"
            )
        chosen = [n for n in names if plots is None or n in plots]
        plotted = {name: _plot(history, name, steps, progress) for name in chosen}
        return RunData(run, plotted, history.layout())
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read run {run!r}: {exc}") from exc


def _plot(
    history: History, name: str, bounds: tuple[int | None, int | None],
    progress: Callable[[str, int], None] | None,
) -> PlotData:  # fmt: skip
    steps, times, arrays, appends, spec, fig = [], [], [], [], None, None
    for stored in history.frames(name):
        step = stored.step
        if not _within(step, bounds):
            continue
        spec = PlotSpec.from_wire(stored.frame.opts)
        fig = dict(spec.fig_kwargs) if spec.fig_kwargs else fig
        appends.append(spec.append)
        steps.append(np.nan if step is None else float(step))
        made = stored.sent if stored.sent is not None else made_at(stored.frame.opts)
        times.append(stored.time if made is None else made)
        arrays.append(tuple(stored.frame.arrays))
        if progress is not None and len(arrays) % PROGRESS_FRAMES == 0:
            progress(name, len(arrays))
    if progress is not None and len(arrays) >= PROGRESS_FRAMES:
        progress(name, len(arrays))
    kind = spec.kind if spec is not None else "unknown"
    return PlotData(name, kind, np.array(steps, np.float64), np.array(times, np.float64),
                    tuple(arrays), spec.labels if spec is not None else None, fig,
                    tuple(appends), spec)  # fmt: skip


def _within(step: int | None, bounds: tuple[int | None, int | None]) -> bool:
    """Whether a frame of ``step`` is in ``bounds`` (a frame without a step: if unbounded)."""
    low, high = bounds
    if step is None:
        return low is None and high is None
    return (low is None or step >= low) and (high is None or step <= high)


@dataclass(frozen=True)
class RunSummary:
    """What ``streamvis runs`` says of a stored run."""

    name: str
    plots: int
    steps: tuple[int, int] | None
    times: tuple[float, float] | None
    bytes: int  # on disk: its database, log and segment files


def run_summaries(data_dir: str | Path) -> Iterator[RunSummary]:
    """Every stored run of ``data_dir``, by name (a run that cannot be read is reported
    by StoreError when its turn comes)."""
    folder = Path(data_dir)
    for run in _runs(folder):
        history = open_history(folder, run)
        assert isinstance(history, _ReadOnly)
        try:
            names = history.plot_names()
            steps, times = history.step_range(names), history.time_range()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read run {run!r}: {exc}") from exc
        yield RunSummary(run, len(names), steps, times, _size(history.path))


def _runs(data_dir: Path) -> list[str]:
    folder = data_dir / FOLDER
    found = folder.glob(f"*{SUFFIX}") if folder.is_dir() else ()
    return sorted(p.name[: -len(SUFFIX)] for p in found)


def _size(path: Path) -> int:
    total = 0
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + SEGMENTS)):
        if part.is_dir():
            total += sum(f.stat().st_size for f in part.iterdir() if f.is_file())
        elif part.is_file():
            total += part.stat().st_size
    return total
