"""Which rows of append plots are stored as chunks, when, and in what form.

An append plot's rows are sealed into pieces (:mod:`_plots.growing`). Each sealed piece is
queued, and a run's queued pieces are stored in one transaction, 16 at a time or a quarter
of a second after the first: a line plot's as columns and their summary (what a restart
builds its envelope from), other plots' as the ids of the frames that make them again (no
second copy). Once stored, and taken into its plot's bounds or envelope, a piece leaves
memory; it is read back when a page needs its rows. A failure keeps the pieces in memory
and pauses the run's storing for a while: its frames hold the rows, nothing is lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._chunks import NewChunk
from ._plots.envelope import SUMMARY_ROWS, columns_of, summarize
from ._plots.growing import Piece
from ._plots.raster import box_of_columns
from ._plotstate import PlotState, chunk_mark
from ._state import RunState
from ._store import Store

__all__ = ["CHUNKS_AT_ONCE", "CHUNKS_WAIT", "RETRY", "Chunking", "completed"]

CHUNKS_AT_ONCE, CHUNKS_WAIT = 16, 0.25  # pieces stored together: this many, or this late
RETRY = 5.0  # seconds after a failure to store rows as chunks before trying again

# Store what only saves work: (run, job on the writer's thread, then on the loop if it
# stored, or if it failed).
Submit = Callable[[str, Callable[[], None], Callable[[], None], Callable[[], None]], None]


class Chunking:
    """The sealed pieces of every run's append plots, on their way to the store."""

    def __init__(
        self,
        store: Store,
        submit: Submit,
        current: Callable[[str], RunState | None],
        batched: Callable[[], bool],
    ) -> None:
        self.store = store
        self._submit, self._current, self._batched = submit, current, batched
        self._queued: dict[str, list[tuple[NewChunk, PlotState, Piece, Any]]] = {}
        self._paused: dict[str, float] = {}  # run -> when to try storing its rows again

    def pause(self, run: str) -> None:
        """Storing ``run``'s rows failed: try again after a while."""
        self._paused[run] = time.monotonic() + RETRY

    def store_rows(self, run: str, state: RunState, names: set[str]) -> None:
        """Store the sealed pieces of the append plots among ``names`` as chunks; once stored,
        they leave memory (read back when a page needs them), and a restart reads them
        instead of the frames they came from. A failure keeps them in memory, tried again
        after a pause (the frames hold the rows: nothing is lost)."""
        if time.monotonic() < self._paused.get(run, 0.0):
            return
        for name in names:
            plot = state.plots.get(name)
            if plot is not None and plot.spec.append and plot.raw is None:
                for piece in plot.data.unstored():
                    self._store_piece(run, plot, piece)

    def _store_piece(self, run: str, plot: PlotState, piece: Piece) -> None:
        """Queue a sealed piece to be stored: a line plot's as columns (and summed up, for
        a restart), other plots' as the ids of the frames that make it again."""
        store, columns = self.store, piece.columns
        assert columns is not None
        first_id, last_id, ends = chunk_mark(piece)
        name, since, first = plot.name, plot.start_id, piece.first
        runstore = store.open(run)
        new = NewChunk(name, since, first, piece.rows, first_id, last_id, ends=ends)
        read: Callable[[], Any]
        if plot.spec.kind == "tandem_lines":
            read = functools.partial(runstore.read_chunk, name, since, first)
        else:
            frames = functools.partial(runstore.frames_of, name, first_id, last_id)
            read = plot.rows_of(frames, plot.data.before(piece), piece.rows)
        self._queued.setdefault(run, []).append((new, plot, piece, read))
        if len(self._queued[run]) >= CHUNKS_AT_ONCE or not self._batched():
            self._put_chunks(run)
        elif len(self._queued[run]) == 1:
            asyncio.get_running_loop().call_later(CHUNKS_WAIT, self._put_chunks, run)

    def _put_chunks(self, run: str) -> None:
        """Store the run's queued pieces in one transaction; once stored, they leave memory
        (their plot's bounds or envelope take them in first). If storing fails, they stay
        and are handed out again after a pause."""
        queued = self._queued.pop(run, [])
        if not queued:
            return
        store = self.store

        pieces = [(new, plot.spec.kind == "tandem_lines", piece) for new, plot, piece, _ in queued]

        def job() -> None:
            store.open(run).put_chunks([completed(*item) for item in pieces])

        def stored() -> None:
            state = self._current(run)
            for new, plot, piece, read in queued:
                if state is not None and state.plots.get(new.plot) is plot:
                    plot.settle()
                    plot.data.spill(piece, read)

        def failed() -> None:
            for _, plot, piece, _ in queued:
                plot.data.keep(piece)

        self._submit(run, job, stored, failed)


def completed(new: NewChunk, line: bool, piece: Piece) -> NewChunk:
    """A queued piece with what the writer's thread works out: a line plot's columns and
    their summary (what a restart reads instead), other plots' box."""
    columns = piece.columns
    assert columns is not None
    if not line:
        return dataclasses.replace(new, box=box_of_columns(columns))
    summary = None
    if piece.rows % SUMMARY_ROWS == 0:
        x = columns["x"]
        monotonic = bool(np.all(x[1:] >= x[:-1]))
        summary = columns_of(summarize(columns, new.first_row, SUMMARY_ROWS), monotonic)
    return dataclasses.replace(new, columns=columns, summary=summary)
