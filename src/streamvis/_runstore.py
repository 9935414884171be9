"""One run's database: every frame the run accepted, and its long plots' rows as chunks.

Each message's frames are written in one transaction (:meth:`RunStore.append`): a write that
fails (disk full, I/O error, read-only) rolls back and leaves the database as it was, and
the server acknowledges only what committed. In WAL mode with ``synchronous=NORMAL`` a
commit survives the process dying at any instant; a power loss may take the last commits.

History is kept: every frame, with the server's time of arrival and, once clients send it,
its step. What the pages show now (the layout, each replace plot's latest frame, each append
plot's frames since its last replace) is read by :meth:`RunStore.current`, without the
frames that later ones superseded. An append plot's rows are also kept in chunks of
columns (or, for a frame of many rows, as a note that the frame holds them): a restart reads
those, not every frame, and a page's detail is read from them, not from memory.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import _protocol as protocol
from ._chunks import CACHE_SCHEMA, Chunks, ChunkTables
from ._errors import StoreError
from ._history import READ, History, Stored, read_only
from ._retention import Retention
from ._segments import PLACE_COLUMNS, SEGMENT_MIN, Segments

__all__ = ["DEFAULT_BUDGET", "SEGMENTS", "RunStore"]

log = logging.getLogger("streamvis.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY,     -- the order of arrival
    op TEXT NOT NULL,           -- layout, plot, clear
    plot TEXT,
    replace INTEGER NOT NULL,   -- a plot frame that replaces the plot's data
    fig INTEGER NOT NULL,       -- a plot frame that sets fig_kwargs
    step INTEGER,               -- the frame's step, once clients send one
    time REAL NOT NULL,         -- seconds since the epoch, at arrival
    frame BLOB NOT NULL,        -- the frame as it came (protocol.encode), or empty if...
    seg INTEGER,                -- ...its bytes are in this segment file, at pos, with crc
    pos INTEGER,                --    (_segments.Place)
    size INTEGER,               -- the frame's bytes (none in databases of before segments)
    crc INTEGER,
    sent REAL,                  -- when the client made it, by its clock, if it said
    rows INTEGER                -- an append plot's rows once this frame is applied
);
CREATE INDEX IF NOT EXISTS frames_by_plot ON frames (plot, id);
CREATE INDEX IF NOT EXISTS frames_replacing ON frames (plot, id) WHERE replace;
CREATE INDEX IF NOT EXISTS frames_setting_fig ON frames (plot, id) WHERE fig;
CREATE INDEX IF NOT EXISTS frames_not_plots ON frames (op, id) WHERE op != 'plot';
CREATE INDEX IF NOT EXISTS frames_by_step ON frames (plot, step, id) WHERE step IS NOT NULL;
CREATE TABLE IF NOT EXISTS clients (cid TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS removed (seg INTEGER PRIMARY KEY);  -- segments nothing names now
-- A line plot's frames with NaN or inf values (as its client counted them), at their x.
CREATE TABLE IF NOT EXISTS nonfinite (id INTEGER PRIMARY KEY, plot TEXT, x REAL, n INTEGER);
"""
# SQLite's log (WAL) is copied into the database, and both synced, once it holds this many
# bytes (SQLite's default is 1,000 pages: 4 MiB of the default 4 KiB pages, which suit small
# rows, large frames' bytes being in segment files; syncing that often cost small frames a
# fifth of their rate). The log is then cut back to this size if it grew past it.
_LOG_BYTES = 64 * 2**20
# Every row's columns, and those of a row whose bytes are in a segment file besides: binding
# NULLs costs too (small frames stored 2.8 us a row with 9 columns, 3.9 us with 13).
_COLUMNS = ("id", "op", "plot", "replace", "fig", "step", "time", "frame", "size", "sent")
_PLACE = ("seg", "pos", "crc")
_INSERTED = {  # the columns of each shape of row, by its width
    len(c): c
    for c in (_COLUMNS, (*_COLUMNS, "rows"), (*_COLUMNS, *_PLACE), (*_COLUMNS, "rows", *_PLACE))
}
# Columns of frames that databases of earlier versions lack, added when one is opened.
_ADDED = {**dict.fromkeys(PLACE_COLUMNS, "INTEGER"), "sent": "REAL", "rows": "INTEGER"}
_TROUBLE_PAGES = 8  # after a failed write, the log is copied into the database this often...
_TROUBLE_SECONDS = 60.0  # ...for this long
SEGMENTS = "-segments"  # the folder of a database's segment files: its name and this
DEFAULT_BUDGET = 4 * 2**30  # bytes of disk a run may take before its history is thinned


class RunStore(History, ChunkTables, Retention):
    """One run's database. Writes come from one thread at a time; reads from any."""

    def __init__(self, path: Path, budget: int = DEFAULT_BUDGET) -> None:
        self.path, self.budget = path, budget
        self._written = 0  # bytes appended since the store last weighed itself
        self._over = False  # warned that appended data alone exceeds the budget
        self._troubled = 0.0  # until when writes keep the log small, after a failed one
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._writer = self._connect()
        self._segments = Segments(path.with_name(path.name + SEGMENTS), budget // 16)
        # How many values one statement may bind: 32,766 since SQLite 3.32, 999 before.
        self._variables = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
        self._renew_caches()
        found = [row[1] for row in self._writer.execute("PRAGMA table_info(frames)")]
        for column, kind in _ADDED.items() if found else ():
            if column not in found:
                self._writer.execute(f"ALTER TABLE frames ADD COLUMN {column} {kind}")
        self._writer.executescript(_SCHEMA + CACHE_SCHEMA)
        self._forget_removed()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA journal_size_limit = {_LOG_BYTES}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA wal_autocheckpoint = {self._log_pages(db)}")
        return db

    @staticmethod
    def _log_pages(db: sqlite3.Connection) -> int:
        """How many pages the log holds before it is copied (databases differ in page size)."""
        (size,) = db.execute("PRAGMA page_size").fetchone()
        return max(_LOG_BYTES // int(size), _TROUBLE_PAGES)

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = read_only(self.path)
            self._readers.append(db)
        return db

    def append(
        self,
        frames: Iterable[tuple[protocol.Frame, bytes | memoryview]],
        ids: Sequence[int] | None = None,
        rows: Sequence[int | None] | None = None,
    ) -> None:
        """Write ``frames`` (with their bytes) in one transaction; on failure, write none.
        ``ids`` numbers them (later than any stored; by default, the next free ones);
        ``rows`` says how many rows each one's append plot holds once it is applied.

        Raises StoreError naming the cause (the database is then as it was before).
        """
        now, seqs = time.time(), {}
        kept = []
        for i, (frame, data) in enumerate(frames):
            seqs[frame.cid] = frame.seq
            if frame.op != "sync":
                kept.append((ids[i] if ids else None, rows[i] if rows else None, frame, data))
        large = [data for *_, data in kept if len(data) >= SEGMENT_MIN]
        places = self._segments.write(large) if large else []
        values: list[tuple[object, ...]] = []
        at = iter(places)
        for frame_id, held, frame, data in kept:
            step, sent = frame.opts.get("step"), protocol.made_at(frame.opts)
            place = next(at) if len(data) >= SEGMENT_MIN else None
            row: tuple[object, ...] = (
                frame_id,
                frame.op,
                frame.name,
                frame.op == "plot" and not frame.opts.get("append"),  # a replace
                "fig" in frame.opts,
                step if type(step) is int else None,
                now,
                data if place is None else b"",
                len(data),
                sent,
            )
            row = row if held is None else (*row, held)
            values.append(row if place is None else (*row, place.seg, place.pos, place.crc))
        db = self._writer
        try:
            db.execute("BEGIN IMMEDIATE")
            # Many rows to a statement: sqlite3 lets go of the GIL at every step, and taking
            # it back from a busy event loop can take its switch interval (5 ms): a row a step
            # (executemany) stored 96 rows/s beside a busy thread, against 334k/s beside none.
            for part in _statements(values, self._variables):  # in order: ids may be the next free
                columns = _INSERTED[len(part[0])]
                marks = "(" + ", ".join("?" * len(columns)) + ")"
                db.execute(
                    f"INSERT INTO frames ({', '.join(columns)}) VALUES "
                    + ", ".join([marks] * len(part)),
                    [v for r in part for v in r],
                )
            bad = [(i, f.name, _x(f), f.opts["bad"]) for i, f, _ in _bad(kept)]
            if bad:
                db.executemany("INSERT INTO nonfinite (id, plot, x, n) VALUES (?, ?, ?, ?)", bad)
            db.executemany(
                "INSERT INTO clients (cid, seq) VALUES (?, ?) "
                "ON CONFLICT (cid) DO UPDATE SET seq = max(seq, excluded.seq)",
                seqs.items(),
            )
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._failed()
            self._segments.undo(places)
            raise StoreError(f"cannot store frames of run {self.path.stem!r}: {exc}") from exc
        self._untroubled()
        self._written += sum(len(data) for *_, data in kept)
        if self._written > self.budget // 16:
            self._written = 0
            try:
                self.thin()
            except sqlite3.Error as exc:  # the frames are stored: thinning waits for later
                log.warning("run %r: could not thin its history: %s", self.path.stem, exc)

    def _failed(self) -> None:
        """After a failed write: roll it back, and keep the log small from now on. SQLite
        copies its log (WAL) into the database only every 1,000 pages (64 MiB), so on a disk
        with less room it would fill what frees up and stop again, and a log that filled
        the disk cannot be copied (that takes room too). For a while after a failure it is
        copied every few pages, and at once where there is room for it."""
        db = self._writer
        self._troubled = time.monotonic() + _TROUBLE_SECONDS
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.execute(f"PRAGMA wal_autocheckpoint = {_TROUBLE_PAGES}")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:  # the disk is still full: tried again at the next failure
            log.debug("run %r: could not shrink its log: %s", self.path.stem, exc)

    def _untroubled(self) -> None:
        """A write went through: long after the last failure, copy the log at its pace."""
        if self._troubled and time.monotonic() > self._troubled:
            self._troubled = 0.0
            self._writer.execute(f"PRAGMA wal_autocheckpoint = {self._log_pages(self._writer)}")

    def last_seqs(self) -> dict[str, int]:
        """The last sequence number stored of each client, to recognise what it resends."""
        return dict(self._reader().execute("SELECT cid, seq FROM clients"))

    def last_id(self) -> int:
        """The id of the run's latest frame (0 if none): later frames are numbered above."""
        (last,) = self._reader().execute("SELECT coalesce(max(id), 0) FROM frames").fetchone()
        return int(last)

    def current(self, chunks: bool = True) -> Iterator[Stored | Chunks]:
        """What the run shows now: its last layout first (as it applies, with the cells
        others laid out), then each plot's frames since its last replace (and its last
        fig_kwargs), in order; none from before a clear. Where stored chunks hold a plot's
        rows (and ``chunks`` says to use them), they come (as :class:`Chunks`) right after
        its first frame, and only the frames after them follow."""
        db = self._reader()
        (cleared,) = db.execute(
            "SELECT coalesce(max(id), 0) FROM frames WHERE op = 'clear' AND op != 'plot'"
        ).fetchone()
        (layout,) = db.execute(
            "SELECT max(id) FROM frames WHERE op = 'layout' AND op != 'plot' AND id > ?",
            (cleared,),
        ).fetchone()
        if layout is None:
            return  # nothing can be placed
        last = next(self._stored(db.execute(f"{READ} WHERE id = ?", (layout,))), None)
        placed = sorted(last.frame.opts.get("cells", {})) if last is not None else []
        starts = []  # each placed plot's first frame since its last replace, and last fig
        for plot in placed:  # by index, not by reading every frame
            start = self._last(db, "replace", plot, cleared)
            if start is None:
                (start,) = db.execute(
                    "SELECT min(id) FROM frames WHERE plot = ? AND id > ?", (plot, cleared)
                ).fetchone()
            if start is not None:
                starts.append((plot, start, self._last(db, "fig", plot, cleared)))
        ids, chunked = [layout], {}
        for plot, start, fig in starts:
            if fig is not None and fig < start:
                ids.append(fig)
            found = self.stored_chunks(plot, start) if chunks else []
            after = start - 1
            if found:
                chunked[start] = Chunks(plot, found)
                after = max(found[-1].last_id, start)
                ids.append(start)
            query = "SELECT id FROM frames WHERE plot = ? AND id > ? ORDER BY id"
            ids += [row[0] for row in db.execute(query, (plot, after))]
        ids = [layout, *sorted(set(ids[1:]) - {layout})]  # the layout first: it places them
        order = {frame_id: i for i, frame_id in enumerate(ids)}
        for first in range(0, len(ids), 512):  # blobs by id, a few at a time
            chunk = ids[first : first + 512]
            marks = ",".join("?" * len(chunk))
            query = f"{READ} WHERE id IN ({marks})"
            rows = sorted(db.execute(query, chunk), key=lambda row: order[row[0]])
            for stored in self._stored(rows):
                yield stored
                if stored.id in chunked:
                    yield chunked[stored.id]

    @staticmethod
    def _last(db: sqlite3.Connection, flag: str, plot: str, after: int) -> int | None:
        """The id of the plot's last frame after ``after`` with ``flag`` (replace, fig)."""
        query = f"SELECT max(id) FROM frames WHERE plot = ? AND {flag} AND id > ?"
        (found,) = db.execute(query, (plot, after)).fetchone()
        return None if found is None else int(found)

    def close(self) -> None:
        """Close the database: its readers and its writer, and its segment file."""
        for reader in self._readers:
            reader.close()
        self._readers.clear()
        self._writer.close()
        self._segments.close()


def _statements(rows: list[tuple[object, ...]], variables: int) -> Iterator[list[Any]]:
    """``rows`` in runs of one shape, in order, each run cut to what a statement may bind."""
    start = 0
    while start < len(rows):
        width = len(rows[start])
        stop = start + 1
        limit = start + max(variables // width, 1)
        while stop < len(rows) and stop < limit and len(rows[stop]) == width:
            stop += 1
        yield rows[start:stop]
        start = stop


def _bad(kept: list[Any]) -> Iterator[tuple[int, protocol.Frame, Any]]:
    """The line plot frames of ``kept`` (id, rows, frame, data) with non-finite values."""
    for frame_id, _, frame, data in kept:
        bad = frame.opts.get("bad")
        if type(bad) is int and bad > 0 and frame.op == "plot" and len(frame.arrays) == 2:
            yield frame_id, frame, data


def _x(frame: protocol.Frame) -> float:
    """A line plot frame's x."""
    return float(frame.arrays[0].reshape(-1)[0])
