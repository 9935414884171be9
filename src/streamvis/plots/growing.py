"""Columns that only grow, for appended plot data: amortized O(1) appends, views of rows."""

from __future__ import annotations

import numpy as np

from .columns import Columns

__all__ = ["GrowingColumns"]

_PIECE_ROWS = 16384  # appends this large are kept as they came, not copied into the tail


class GrowingColumns:
    """Equal-length numpy columns that only grow: rows once written never change.

    Small appends go into a tail buffer whose capacity doubles (amortized O(1)); a large
    append is kept as it came, usually views of the received frame, so it is never copied.
    Reading rows concatenates just the pieces that hold them.
    """

    def __init__(self, columns: Columns) -> None:
        self._pieces: list[Columns] = []  # sealed: large appends, and full tails
        self._tail = {name: np.array(values) for name, values in columns.items()}
        self._tail_rows = self._rows = _length(columns)

    def __len__(self) -> int:
        return self._rows

    def append(self, columns: Columns) -> None:
        """Append rows; ``columns`` must have the same names."""
        rows = _length(columns)
        if rows >= _PIECE_ROWS:
            self._seal_tail()
            self._pieces.append(dict(columns))
            self._rows += rows
            return
        start, need = self._tail_rows, self._tail_rows + rows
        for name, values in columns.items():
            buffer = self._tail[name]
            if need > len(buffer) or (
                values.dtype != buffer.dtype and np.result_type(buffer, values) != buffer.dtype
            ):
                grown = np.empty(max(need, 2 * len(buffer), 16), np.result_type(buffer, values))
                grown[:start] = buffer[:start]
                self._tail[name] = buffer = grown
            buffer[start:need] = values
        self._tail_rows = need
        self._rows += rows

    def _seal_tail(self) -> None:
        if self._tail_rows:
            self._pieces.append({k: v[: self._tail_rows] for k, v in self._tail.items()})
            self._tail = {k: v[:0].copy() for k, v in self._tail.items()}
            self._tail_rows = 0

    def pieces(self, start: int = 0, stop: int | None = None) -> list[Columns]:
        """Rows ``start:stop`` as consecutive pieces, views all: rows once written never
        change, so another thread may read them while rows are appended."""
        stop = self._rows if stop is None else min(stop, self._rows)
        parts: list[Columns] = []
        end = self._rows
        tail = {k: v[: self._tail_rows] for k, v in self._tail.items()}
        for piece in (tail, *reversed(self._pieces)):
            if end <= start:
                break
            size = _length(piece)
            first = end - size
            if size and first < stop:
                parts.append({k: v[max(start - first, 0) : stop - first] for k, v in piece.items()})
            end = first
        parts.reverse()
        return parts

    def view(self, start: int = 0, stop: int | None = None) -> Columns:
        """Rows ``start:stop`` of every column (views where they lie in one piece)."""
        parts = self.pieces(start, stop)
        if not parts:
            return {k: v[:0] for k, v in self._tail.items()}
        if len(parts) == 1:
            return parts[0]
        joined = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if start == 0 and (stop is None or stop >= self._rows):  # a page opened: keep the copy
            self._pieces, self._tail_rows = [joined], 0
            self._tail = {k: v[:0].copy() for k, v in self._tail.items()}
        return joined


def _length(columns: Columns) -> int:
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns differ in length: { {k: len(v) for k, v in columns.items()} }")
    return lengths.pop() if lengths else 0
