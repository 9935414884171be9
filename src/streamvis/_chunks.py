"""The tables of a run's database that only save work: its append plots' rows as chunks,
and its big plots' last slow images. A restart reads the chunks instead of every frame;
a page's rows that left memory are read back from them.

What the frames hold, in another form: a table of another form than this version's is
dropped at open, to be filled again. :class:`ChunkTables` is mixed into
:class:`_runstore.RunStore`, which opens the database.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _protocol as protocol
from ._errors import ProtocolError, StoreError

__all__ = ["CACHE_SCHEMA", "Chunk", "ChunkPlace", "ChunkTables", "Chunks", "NewChunk"]

CACHE_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (  -- an append plot's rows as columns: a cache of its frames
    plot TEXT NOT NULL,
    since INTEGER NOT NULL,     -- the id of the frame its rows start from (a replace)
    first_row INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    first_id INTEGER NOT NULL,  -- the ids of the first and last frames whose rows it holds
    last_id INTEGER NOT NULL,
    box_x0 REAL, box_x1 REAL, box_y0 REAL, box_y1 REAL,  -- around its finite points, if any
    ends BLOB,                  -- what the append after it continues from (line ends)
    summary BLOB,               -- a line plot's rows summed up (envelope.columns_of)
    data BLOB,                  -- the columns (protocol.encode); none: its frames make them
    PRIMARY KEY (plot, since, first_row)
);
CREATE TABLE IF NOT EXISTS images (  -- the last slow image of each big plot, for a restart
    plot TEXT PRIMARY KEY,
    since INTEGER NOT NULL,     -- as in chunks
    rows INTEGER NOT NULL,      -- it shows the plot's first rows
    view TEXT NOT NULL,         -- [x0, x1, y0, y1, width, height] it was drawn for (JSON)
    image BLOB NOT NULL         -- (height, width) uint32 pixels, R G B A
);
"""
# Each cache table's columns. Large blobs come last in a row: SQLite reads through them to
# reach the columns after.
_CACHES = {
    "chunks": ["plot", "since", "first_row", "rows", "first_id", "last_id", "box_x0", "box_x1",
               "box_y0", "box_y1", "ends", "summary", "data"],
    "images": ["plot", "since", "rows", "view", "image"],
}  # fmt: skip


@dataclass(frozen=True)
class ChunkPlace:
    """Where stored rows of an append plot stand: its data since frame ``since``, from its
    row ``first_row`` on, the ``rows`` rows of its frames ``first_id`` to ``last_id``."""

    plot: str
    since: int
    first_row: int
    rows: int
    first_id: int
    last_id: int


@dataclass(frozen=True)
class Chunk(ChunkPlace):
    """Stored rows read back. ``read`` reads them as columns (on any thread); None if they
    were not stored as columns: ``frames`` reads the frames, which make them again."""

    box: tuple[float, float, float, float] | None
    ends: dict[str, np.ndarray]
    read: Callable[[], dict[str, np.ndarray]] | None
    frames: Callable[[], list[protocol.Frame]]
    summary: dict[str, np.ndarray] | None = None


@dataclass(frozen=True)
class NewChunk(ChunkPlace):
    """Rows to store (:meth:`RunStore.put_chunks`); with ``columns`` None, only where."""

    columns: Mapping[str, np.ndarray] | None = None
    ends: Mapping[str, np.ndarray] | None = None
    box: tuple[float, float, float, float] | None = None
    summary: Mapping[str, np.ndarray] | None = None


@dataclass(frozen=True)
class Chunks:
    """Where a plot's rows come from stored chunks instead of its frames (each after the
    plot's first frame, before the frames after them): in order, from row 0."""

    plot: str
    chunks: list[Chunk]


class ChunkTables:
    """Chunks and images of a run's database (mixed into RunStore, which provides these)."""

    path: Path
    _writer: sqlite3.Connection

    def _reader(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _failed(self) -> None:
        raise NotImplementedError

    def frames_of(self, plot: str, first: int, last: int) -> list[protocol.Frame]:
        raise NotImplementedError

    def _renew_caches(self) -> None:
        """Drop the cache tables of another form than this version's (filled again)."""
        for table, columns in _CACHES.items():
            found = [row[1] for row in self._writer.execute(f"PRAGMA table_info({table})")]
            if found and found != columns:
                self._writer.execute(f"DROP TABLE {table}")

    def stored_chunks(self, plot: str, since: int) -> list[Chunk]:
        """The plot's stored chunks from row 0 on, without a gap (later ones are unused)."""
        rows = self._reader().execute(
            "SELECT first_row, rows, first_id, last_id, box_x0, box_x1, box_y0, box_y1, ends, "
            "summary, data IS NOT NULL FROM chunks WHERE plot = ? AND since = ? "
            "ORDER BY first_row",
            (plot, since),
        )
        chunks: list[Chunk] = []
        for first_row, count, first_id, last_id, x0, x1, y0, y1, ends, summed, columns in rows:
            if first_row != (chunks[-1].first_row + chunks[-1].rows if chunks else 0):
                break
            box = None if x0 is None else (x0, x1, y0, y1)
            read = functools.partial(self.read_chunk, plot, since, first_row) if columns else None
            frames = functools.partial(self.frames_of, plot, first_id, last_id)
            try:
                at_end = _unpack(ends) if ends is not None else {}
                summary = _unpack(summed) if summed is not None else None
            except ProtocolError:
                break
            chunk = Chunk(
                plot, since, first_row, count, first_id, last_id, box, at_end, read, frames, summary
            )
            chunks.append(chunk)
        return chunks

    def put_chunks(self, chunks: Sequence[NewChunk]) -> None:
        """Store rows of append plots, in one transaction (and forget the chunks of their
        plots' older data). Raises StoreError if they cannot be stored (the frames still
        hold the rows)."""
        rows = [
            (c.plot, c.since, c.first_row, c.rows, c.first_id, c.last_id,
             *(c.box if c.box is not None else (None, None, None, None)),
             _pack(c.plot, c.ends) if c.ends else None,
             _pack(c.plot, c.summary) if c.summary else None,
             _pack(c.plot, c.columns) if c.columns is not None else None)
            for c in chunks
        ]  # fmt: skip
        db = self._writer
        try:
            db.execute("BEGIN IMMEDIATE")
            for plot, since in {(c.plot, c.since) for c in chunks}:
                db.execute("DELETE FROM chunks WHERE plot = ? AND since < ?", (plot, since))
            db.executemany(
                "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._failed()
            raise StoreError(f"cannot store rows of run {self.path.stem!r}: {exc}") from exc

    def read_chunk(self, plot: str, since: int, first_row: int) -> dict[str, np.ndarray]:
        """The columns of a stored chunk. Raises StoreError if it is gone or damaged."""
        row = (
            self._reader()
            .execute(
                "SELECT data FROM chunks WHERE plot = ? AND since = ? AND first_row = ?",
                (plot, since, first_row),
            )
            .fetchone()
        )
        try:
            if row is None:
                raise ProtocolError("no such chunk")
            return _unpack(row[0])
        except ProtocolError as exc:
            raise StoreError(
                f"run {self.path.stem!r}: cannot read rows {first_row}+ of plot {plot!r}: {exc}"
            ) from exc

    def put_image(
        self, plot: str, since: int, rows: int, view: Sequence[float], image: np.ndarray
    ) -> None:
        """Keep a plot's image of its first ``rows`` rows, drawn for ``view``, replacing the
        one before. Raises StoreError if it cannot be stored."""
        db = self._writer
        try:
            db.execute(
                "INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?)",
                (plot, since, rows, json.dumps(list(view)), _pack(plot, {"image": image})),
            )
        except sqlite3.Error as exc:
            self._failed()
            raise StoreError(f"cannot store an image of plot {plot!r}: {exc}") from exc

    def image(self, plot: str, since: int) -> tuple[int, list[float], np.ndarray] | None:
        """The plot's kept image of its data since frame ``since``: (rows, view, image)."""
        row = (
            self._reader()
            .execute(
                "SELECT rows, view, image FROM images WHERE plot = ? AND since = ?", (plot, since)
            )
            .fetchone()
        )
        if row is None:
            return None
        try:
            return row[0], json.loads(row[1]), _unpack(row[2])["image"]
        except (ProtocolError, ValueError, KeyError):
            return None  # damaged: drawn again


def _pack(plot: str, columns: Mapping[str, np.ndarray]) -> bytes:
    """Named columns as one blob, in the wire format (a frame only the store reads)."""
    names = list(columns)
    arrays = tuple(np.ascontiguousarray(columns[k]) for k in names)
    frame = protocol.Frame("plot", "chunk", "", 0, plot, {"columns": names}, arrays)
    return protocol.encode(frame)


def _unpack(data: bytes) -> dict[str, np.ndarray]:
    frame = protocol.decode(data, protocol.TRUSTED_LIMITS)
    names = frame.opts.get("columns")
    if not isinstance(names, list) or len(names) != len(frame.arrays):
        raise ProtocolError("a chunk's names do not match its columns")
    return dict(zip(names, frame.arrays, strict=True))
