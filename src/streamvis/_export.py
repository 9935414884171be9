"""``streamvis export``: a stored run into a file whose suffix picks the format. ``.csv`` and
``.parquet``: line plots in long form (``plot, line, step, time, value``); ``.npz``: every
plot's arrays with the steps and times of every kept frame; ``.html``: the dashboard in one
self-contained file (:mod:`_export_html`). The file appears whole or not at all: it is
written beside OUT and renamed.
"""

from __future__ import annotations

import csv
import importlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from ._errors import ArgumentError
from ._readrun import PlotData, RunData, long_form

__all__ = ["FORMATS", "LONG_COLUMNS", "check_out", "write_run"]

FORMATS = (".csv", ".npz", ".parquet", ".html")
LONG_COLUMNS = ("plot", "line", "step", "time", "value")
PIECE_FRAMES = 10_000  # a line plot's frames turned into rows at once


def check_out(out: str | Path) -> Path:
    """OUT as a path, if its suffix names a format and its folder takes files; else
    ArgumentError saying what to give instead."""
    path = Path(out)
    if path.suffix.lower() not in FORMATS:
        raise ArgumentError(
            f"cannot tell the format of {str(out)!r}: end OUT with one of {', '.join(FORMATS)}"
        )
    folder = path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK) or path.is_dir():
        raise ArgumentError(f"cannot write {str(out)!r}: its folder is missing or not writable")
    return path


def write_run(run: RunData, out: Path, html: Callable[[RunData, IO[bytes]], None]) -> int:
    """Write ``run`` to ``out`` in the format its suffix names (``html`` writes the page);
    returns the bytes written."""
    suffix = out.suffix.lower()
    with _replacing(out) as file:
        if suffix == ".npz":
            np.savez(file, **dict(_npz_arrays(run)))
        elif suffix == ".html":
            html(run, file)
        else:
            lines = _line_plots(run, suffix)
            if suffix == ".csv":
                _write_csv(lines, file)
            else:
                _write_parquet(lines, file)
    return out.stat().st_size


@contextmanager
def _replacing(out: Path) -> Iterator[IO[bytes]]:
    """A file to write, which replaces ``out`` once written whole (and is gone if not)."""
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)  # as open() would have made it, not mkstemp's 0600
        os.replace(name, out)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _line_plots(run: RunData, suffix: str) -> list[PlotData]:
    lines = [plot for plot in run.plots.values() if plot.kind == "tandem_lines"]
    if not lines:
        raise ArgumentError(
            f"run {run.name!r} has no line plot to write as {suffix} (its plots: "
            f"{', '.join(run.plots) or 'none'}): write .npz for every plot's arrays"
        )
    return lines


def _write_csv(plots: list[PlotData], file: IO[bytes]) -> None:
    with open(file.fileno(), "w", newline="", encoding="utf-8", closefd=False) as text:
        writer = csv.writer(text)
        writer.writerow(LONG_COLUMNS)
        for plot, frames in _pieces(plots):
            columns = long_form(plot, frames)
            steps = [_number(s) for s in columns["step"].tolist()]
            writer.writerows(
                zip(
                    columns["plot"].tolist(),
                    columns["line"].tolist(),
                    steps,
                    [repr(t) for t in columns["time"].tolist()],
                    [repr(v) for v in columns["value"].tolist()],
                    strict=True,
                )
            )


def _pieces(plots: list[PlotData]) -> Iterator[tuple[PlotData, slice]]:
    """Each plot's frames a piece at a time: the rows of one piece are made at once."""
    for plot in plots:
        for first in range(0, len(plot.arrays), PIECE_FRAMES):
            yield plot, slice(first, first + PIECE_FRAMES)


def _number(value: float) -> str:
    """A step as written: whole numbers without a point."""
    return str(int(value)) if value.is_integer() else repr(value)


def _write_parquet(plots: list[PlotData], file: IO[bytes]) -> None:
    try:
        pyarrow = importlib.import_module("pyarrow")
        parquet = importlib.import_module("pyarrow.parquet")
    except ImportError as exc:
        raise ArgumentError(
            "writing .parquet needs pyarrow: pip install pyarrow (or write .csv)"
        ) from exc
    writer = None
    for plot, frames in _pieces(plots):  # a row group a piece: memory follows the piece
        part = long_form(plot, frames)
        columns = {name: part[name].tolist() if name in ("plot", "line") else part[name]
                   for name in LONG_COLUMNS}  # fmt: skip
        table = pyarrow.table(columns)
        if writer is None:
            writer = parquet.ParquetWriter(file, table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()


def _npz_arrays(run: RunData) -> Iterator[tuple[str, Any]]:
    """Every plot's arrays by key: ``PLOT/steps`` and ``PLOT/times`` (one per kept frame);
    line plots' ``PLOT/x``, ``PLOT/values`` (frames x lines) and ``PLOT/lines``; the other
    plots' ``PLOT/data`` (frames x the shape sent), or ``PLOT/data/I`` for frame I where
    the shapes differ."""
    for name, plot in run.plots.items():
        yield f"{name}/steps", plot.steps
        yield f"{name}/times", plot.times
        if plot.kind == "tandem_lines":
            yield f"{name}/x", plot.x()
            yield f"{name}/values", plot.values()
            yield f"{name}/lines", np.array(plot.lines, dtype=str)
            continue
        data = [arrays[0] for arrays in plot.arrays]
        if len({(a.shape, a.dtype) for a in data}) <= 1 and data:
            yield f"{name}/data", np.stack(data)
        else:
            for index, array in enumerate(data):
                yield f"{name}/data/{index}", array
