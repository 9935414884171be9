"""A stored run in Python: :func:`read_run` gives every plot's kept frames as numpy arrays,
with their steps and times, and :func:`run_summaries` what ``streamvis runs`` lists.

It reads a run's database read-only, beside a server that may be writing it (SQLite's
write-ahead log lets each statement read one consistent snapshot), and changes no data
(SQLite may make the log's index file, ``-shm``, where there is none).
"""

from __future__ import annotations

import functools
import importlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import ArgumentError, StoreError, StreamvisError
from ._history import READ, History, read_only
from ._protocol import check_name, made_at
from ._runstore import SEGMENTS
from ._segments import Segments
from ._specs import Cell, PlotSpec, check_layout
from ._store import FOLDER, SUFFIX, run_files, run_names

__all__ = [
    "PROGRESS_FRAMES",
    "PlotData",
    "RunData",
    "RunSummary",
    "read_run",
    "run_summaries",
]

log = logging.getLogger("streamvis.export")

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
    specs: tuple[PlotSpec, ...] = field(default=(), repr=False)  # as each frame asked

    @functools.cached_property
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
    steps: tuple[int | None, int | None] = (None, None)  # the steps read (None: open)


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
            try:
                db = read_only(self.path)
                db.execute("SELECT 1 FROM frames LIMIT 1")
            except sqlite3.OperationalError:  # no -shm file, and none may be made here:
                db = read_only(self.path, immutable=True)  # so no server writes it
            self._local.db = db
        return db

    def since_cleared(self) -> int:
        """The id after which the run was last cleared (0: never)."""
        found = self._reader().execute("SELECT max(id) FROM frames WHERE op = 'clear'")
        return int(found.fetchone()[0] or 0)

    def plot_names(self) -> list[str]:
        """The run's plots since it was last cleared, in the order each first appeared."""
        query = "SELECT plot, min(id) FROM frames WHERE op = 'plot' AND id > ? GROUP BY plot"
        found = self._reader().execute(query, (self.since_cleared(),))
        return [name for name, _ in sorted(found, key=lambda r: r[1])]

    def layout(self) -> dict[str, Cell] | None:
        """The run's last layout (None: it sent none, or cleared it since)."""
        rows = self._reader().execute(
            f"{READ} WHERE op IN ('layout', 'clear') ORDER BY id DESC LIMIT 1"
        )
        last = next(self._stored(rows), None)
        if last is None or last.frame.op != "layout":
            return None
        return check_layout(last.frame.opts.get("cells", {}))


def _open(data_dir: str | Path, run: str) -> _ReadOnly:
    """A stored run's history, for reading only; ArgumentError if there is no such run."""
    path = Path(data_dir) / FOLDER / f"{check_name(run, 'run name')}{SUFFIX}"
    if not path.is_file():
        known = ", ".join(run_names(Path(data_dir) / FOLDER)) or "none"
        raise ArgumentError(f"no run {run!r} in {str(data_dir)!r} (runs there: {known})")
    return _ReadOnly(path)


def read_run(
    data_dir: str | Path, run: str, plots: Sequence[str] | None = None,
    steps: tuple[int | None, int | None] = (None, None),
    progress: Callable[[str, int], None] | None = None,
    held: bool = False,
) -> RunData:  # fmt: skip
    """Run ``run`` of the server data folder ``data_dir``: its plots (or those named in
    ``plots``), each with its kept frames of steps in ``steps`` (inclusive; None: open),
    arrays as sent. Reads while a server runs, without disturbing it. ``progress`` is
    told a plot's name and its frames read so far, every PROGRESS_FRAMES. With ``held``,
    an append plot also keeps its frames since its last replace before the first step
    (what it held then; a page at that step shows them)."""
    history = _open(data_dir, run)
    try:
        names = history.plot_names()
        missing = [p for p in plots or () if p not in names]
        if missing:
            raise ArgumentError(
                f"run {run!r} has no plot {', '.join(map(repr, missing))} "
                f"(its plots: {', '.join(names) or 'none'})"
            )
        chosen = [n for n in names if plots is None or n in plots]
        plotted = {name: _plot(history, name, steps, progress, held) for name in chosen}
        return RunData(run, plotted, history.layout(), steps)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read run {run!r}: {exc}") from exc


_Kept = tuple[float, float, tuple[np.ndarray, ...], PlotSpec]  # step, time, arrays, spec


def _plot(
    history: _ReadOnly, name: str, bounds: tuple[int | None, int | None],
    progress: Callable[[str, int], None] | None, held: bool,
) -> PlotData:  # fmt: skip
    """A plot's frames as it is now: those since the run was last cleared, and since the
    plot last changed kind (a name may come back as another kind); of steps in ``bounds``,
    and, if ``held``, before them an append plot's frames since its last replace."""
    kept: list[_Kept] = []
    lead: list[_Kept] = []  # before the bounds: since the last replace
    fig: dict[str, Any] | None = None
    for count, stored in enumerate(history.frames(name, history.since_cleared()), 1):
        spec = PlotSpec.from_wire(stored.frame.opts)
        fig = dict(spec.fig_kwargs) if spec.fig_kwargs else fig  # sent once, maybe earlier
        if kept and spec.kind != kept[-1][3].kind:
            kept = []
        if progress is not None and count % PROGRESS_FRAMES == 0:
            progress(name, count)
        made = stored.sent if stored.sent is not None else made_at(stored.frame.opts)
        step = np.nan if stored.step is None else float(stored.step)
        frame = (step, stored.time if made is None else made, tuple(stored.frame.arrays), spec)
        low = bounds[0]
        if stored.step is not None and low is not None and stored.step < low and not kept:
            if held and not spec.append:
                lead = []  # a replace: what the plot held starts here
            if held:
                lead.append(frame)
        elif _within(stored.step, bounds):
            kept += lead if not kept and spec.append else []
            kept.append(frame)
            lead = []
    specs = tuple(spec for *_, spec in kept)
    last = specs[-1] if specs else None
    return PlotData(
        name, last.kind if last else "unknown", np.array([k[0] for k in kept], np.float64),
        np.array([k[1] for k in kept], np.float64), tuple(k[2] for k in kept),
        last.labels if last else None, fig, tuple(s.append for s in specs), specs,
    )  # fmt: skip


def _within(step: int | None, bounds: tuple[int | None, int | None]) -> bool:
    """Whether a frame of ``step`` is in ``bounds`` (a frame without a step is: it is not
    outside them)."""
    low, high = bounds
    if step is None:
        return True
    return (low is None or step >= low) and (high is None or step <= high)


@dataclass(frozen=True)
class RunSummary:
    """What ``streamvis runs`` says of a stored run."""

    name: str
    plots: int
    steps: tuple[int, int] | None
    times: tuple[float, float] | None
    bytes: int  # on disk: its database, log and segment files


def run_summaries(data_dir: str | Path) -> Iterator[RunSummary | str]:
    """Every stored run of ``data_dir``, by name; a run that cannot be read, as its name
    (logged), so that the others are still listed."""
    folder = Path(data_dir)
    for run in run_names(folder / FOLDER):
        try:
            history = _open(folder, run)
            names = history.plot_names()
            steps, times = history.step_range(names), history.time_range()
        except (sqlite3.Error, StreamvisError) as exc:
            log.warning("cannot read run %r: %s", run, exc)
            yield run
            continue
        yield RunSummary(run, len(names), steps, times, _size(history.path))


def _size(path: Path) -> int:
    """Bytes of a run's files on disk (:func:`_store.run_files`)."""
    total = 0
    for part in run_files(path):
        if part.is_dir():
            total += sum(f.stat().st_size for f in part.iterdir() if f.is_file())
        elif part.is_file():
            total += part.stat().st_size
    return total
