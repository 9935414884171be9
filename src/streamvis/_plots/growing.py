"""Columns that only grow, for appended plot data: amortized O(1) appends, views of rows,
and pieces that can leave memory once stored (the store keeps them; RAM is a cache).

Rows are kept in pieces of about CHUNK_ROWS: small appends fill a tail buffer whose
capacity doubles, sealed into a piece once it holds CHUNK_ROWS; a large append is a piece
of its own, kept as it came. A sealed piece, once stored, may be *spilled*: replaced by a
loader that reads it back when its rows are asked for. Each piece remembers the ``mark``
of its last append (the run store's frame id and what the next append needs), so a run
read back from its store starts from its stored pieces and the frames after them.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .columns import Columns

__all__ = ["CHUNK_ROWS", "GrowingColumns", "Piece"]

CHUNK_ROWS = 16384  # rows per piece: appends this large are kept as they came

Loader = Callable[[], Columns]


@dataclass(eq=False)
class Piece:
    """Consecutive rows: held (``columns``), or spilled (``load`` reads them back)."""

    first: int  # the plot's row this piece starts at
    rows: int
    mark: Any  # what the last append into it was marked with
    columns: Columns | None = None
    load: Loader | None = None
    taken: bool = False  # handed out to be stored (see :meth:`GrowingColumns.unstored`)
    first_mark: Any = None  # what the first append into it was marked with

    def read(self) -> Columns:
        """The piece's rows (read back from the store if spilled)."""
        if self.columns is not None:
            return self.columns
        assert self.load is not None
        return self.load()


class GrowingColumns:
    """Equal-length numpy columns that only grow: rows once written never change."""

    def __init__(self, columns: Columns, mark: Any = None) -> None:
        self._pieces: list[Piece] = []  # sealed
        self._firsts: list[int] = []  # the row each piece starts at, to find pieces by row
        self._unstored = 0  # the pieces before this one have all been handed out
        self._tail = {name: np.array(values) for name, values in columns.items()}
        self._tail_rows = self._rows = _length(columns)
        self._mark = self._tail_first = mark  # the last append's, and the tail's first
        if self._rows >= CHUNK_ROWS:
            self._seal_tail()

    def __len__(self) -> int:
        return self._rows

    @property
    def spilled(self) -> int:
        """How many rows are not held in memory."""
        return sum(p.rows for p in self._pieces if p.columns is None)

    def append(self, columns: Columns, mark: Any = None) -> None:
        """Append rows; ``columns`` must have the same names."""
        rows = _length(columns)
        if rows >= CHUNK_ROWS:
            self._seal_tail()
            self._add(Piece(self._rows, rows, mark, dict(columns), first_mark=mark))
            self._rows += rows
            self._mark = mark
            return
        start, need = self._tail_rows, self._tail_rows + rows
        if not start:
            self._tail_first = mark
        for name, values in columns.items():
            buffer = self._tail[name]
            if need > len(buffer) or (
                values.dtype != buffer.dtype and np.result_type(buffer, values) != buffer.dtype
            ):
                size = max(need, min(2 * len(buffer), CHUNK_ROWS), 16)
                grown = np.empty(size, np.result_type(buffer, values))
                grown[:start] = buffer[:start]
                self._tail[name] = buffer = grown
            buffer[start:need] = values
        self._tail_rows = need
        self._rows += rows
        self._mark = mark
        if need >= CHUNK_ROWS:
            self._seal_tail()

    def extend_stored(self, rows: int, mark: Any, load: Loader) -> None:
        """Append a stored piece of ``rows`` rows, spilled (no rows may be in the tail)."""
        assert not self._tail_rows, "stored pieces come before the appends after them"
        self._add(Piece(self._rows, rows, mark, None, load, taken=True))
        self._rows += rows
        self._mark = mark

    def _seal_tail(self) -> None:
        if self._tail_rows:
            tail = {k: v[: self._tail_rows] for k, v in self._tail.items()}
            first = self._rows - self._tail_rows
            piece = Piece(first, self._tail_rows, self._mark, tail, first_mark=self._tail_first)
            self._add(piece)
            self._tail = {k: v[:0].copy() for k, v in self._tail.items()}
            self._tail_rows = 0

    def _add(self, piece: Piece) -> None:
        self._pieces.append(piece)
        self._firsts.append(piece.first)

    def _from(self, row: int) -> int:
        """The index of the piece that holds ``row`` (or the first after it)."""
        return max(bisect.bisect_right(self._firsts, row) - 1, 0)

    def held(self, start: int, stop: int) -> bool:
        """Whether rows ``start:stop`` are all in memory."""
        return not any(
            p.columns is None and p.first < stop and p.first + p.rows > start
            for p in self._pieces[self._from(start) :]
        )

    def before(self, piece: Piece) -> Any:
        """The mark of the piece before ``piece`` (None for the first)."""
        i = self._pieces.index(piece)
        return self._pieces[i - 1].mark if i else None

    def unstored(self) -> list[Piece]:
        """The sealed pieces not yet handed out to be stored; handed out now."""
        pieces = [p for p in self._pieces[self._unstored :] if not p.taken]
        for piece in pieces:
            piece.taken = True
        self._unstored = len(self._pieces)
        return pieces

    def spill(self, piece: Piece, load: Loader) -> None:
        """Let ``piece`` (now stored) leave memory: ``load`` reads it back."""
        piece.load, piece.columns = load, None

    def keep(self, piece: Piece) -> None:
        """Storing ``piece`` failed: hand it out again later."""
        piece.taken = False
        self._unstored = min(self._unstored, self._from(piece.first))

    def pieces(
        self, start: int = 0, stop: int | None = None, newest_first: bool = False
    ) -> Iterator[Columns]:
        """Rows ``start:stop`` piece by piece, spilled pieces read back as they come. Which
        pieces is settled at the call, and held rows are views that appends never touch, so
        another thread may iterate while rows are appended."""
        stop = self._rows if stop is None else min(stop, self._rows)
        tail = Piece(self._rows - self._tail_rows, self._tail_rows, None, self._tail_view())
        parts = [
            (piece, max(start - piece.first, 0), min(stop, piece.first + piece.rows) - piece.first)
            for piece in [*self._pieces[self._from(start) :], tail]
            if piece.rows and piece.first + piece.rows > start and piece.first < stop
        ]
        if newest_first:
            parts.reverse()
        return ({k: v[a:b] for k, v in piece.read().items()} for piece, a, b in parts)

    def head(self, rows: int) -> GrowingColumns:
        """The first ``rows`` rows as columns of their own, sharing this one's held rows and
        its stored pieces' loaders (appends here leave it alone: take it where they run)."""
        head = GrowingColumns({k: v[:0] for k, v in self._tail.items()}, self._tail_first)
        rows = min(rows, self._rows)
        tail = Piece(self._rows - self._tail_rows, self._tail_rows, self._mark, self._tail_view())
        for piece in [*self._pieces, tail]:
            if piece.first >= rows or not piece.rows:
                break
            if piece.first + piece.rows > rows:  # cut: its first rows only
                piece = _cut(piece, rows - piece.first)
            head._add(piece)
        head._rows, head._unstored = rows, len(head._pieces)  # its pieces are not to store
        return head

    def _tail_view(self) -> Columns:
        return {k: v[: self._tail_rows] for k, v in self._tail.items()}

    def view(self, start: int = 0, stop: int | None = None) -> Columns:
        """Rows ``start:stop`` of every column (views where they lie in one piece)."""
        parts = list(self.pieces(start, stop))
        if not parts:
            return {k: v[:0] for k, v in self._tail.items()}
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    @property
    def mark(self) -> Any:
        """The last append's mark."""
        return self._mark


def _cut(piece: Piece, rows: int) -> Piece:
    """The first ``rows`` rows of ``piece`` (read back when asked for, if it left memory)."""
    if piece.columns is not None:
        columns = {k: v[:rows] for k, v in piece.columns.items()}
        return Piece(piece.first, rows, piece.mark, columns, taken=True)
    load = piece.load
    assert load is not None
    return Piece(
        piece.first, rows, piece.mark, None, lambda: {k: v[:rows] for k, v in load().items()}, True
    )


def _length(columns: Columns) -> int:
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns differ in length: { {k: len(v) for k, v in columns.items()} }")
    return lengths.pop() if lengths else 0
