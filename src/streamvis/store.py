"""Durable runs: every frame a run accepted, in an SQLite database of its own.

The store owns ``DATA_DIR/runs/`` and only the files it names there (``RUN.sqlite`` and
SQLite's ``-wal`` and ``-shm`` beside it); nothing else under ``DATA_DIR`` is opened, except
run logs of streamvis 0.1 (``RUN.log``), which are copied in once and then renamed
``RUN.log.migrated``, never changed.

Each message's frames are written in one transaction (:meth:`RunStore.append`): a write that
fails (disk full, I/O error, read-only) rolls back and leaves the database as it was, and
the server acknowledges only what committed. In WAL mode with ``synchronous=NORMAL`` a
commit survives the process dying at any instant; a power loss may take the last commits.

History is kept: every frame, with the server's time of arrival and, once clients send it,
its step. What the pages show now (the layout, each replace plot's latest frame, each append
plot's frames since its last replace) is read by :meth:`RunStore.current`, without the
frames that later ones superseded.

A database that its own ``PRAGMA integrity_check`` finds damaged is kept as it is, renamed
``RUN.sqlite.damaged-TIME``; the frames that can still be read go into a new database for
the run, and the damage is reported once with its extent. One damaged run stops no other.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import protocol
from ._rescue import damage, legacy_frames, readable, with_layout
from .errors import ArgumentError, ProtocolError, StoreError
from .protocol import check_name, is_name

__all__ = ["DEFAULT_BUDGET", "FOLDER", "SUFFIX", "RunStore", "Store", "StoreError", "Stored"]

log = logging.getLogger("streamvis.store")

FOLDER = "runs"
SUFFIX = ".sqlite"
_LEGACY = ".log"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY,     -- the order of arrival
    op TEXT NOT NULL,           -- layout, plot, clear
    plot TEXT,
    replace INTEGER NOT NULL,   -- a plot frame that replaces the plot's data
    fig INTEGER NOT NULL,       -- a plot frame that sets fig_kwargs
    step INTEGER,               -- the frame's step, once clients send one
    time REAL NOT NULL,         -- seconds since the epoch, at arrival
    frame BLOB NOT NULL         -- the frame as it came (protocol.encode)
);
CREATE INDEX IF NOT EXISTS frames_by_plot ON frames (plot, id);
CREATE TABLE IF NOT EXISTS clients (cid TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""
_PAGE_SIZE = 65536  # large blobs write at twice the rate of 4 KiB pages
DEFAULT_BUDGET = 4 * 2**30  # bytes of disk a run may take before its history is thinned


@dataclass(frozen=True)
class Stored:
    """A frame read back, with where it stands in its run's history."""

    id: int
    time: float
    step: int | None
    frame: protocol.Frame


class RunStore:
    """One run's database. Writes come from one thread at a time; reads from any."""

    def __init__(self, path: Path, budget: int = DEFAULT_BUDGET) -> None:
        self.path, self.budget = path, budget
        self._written = 0  # bytes appended since the store last weighed itself
        self._over = False  # warned that appended data alone exceeds the budget
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._writer = self._connect()
        self._writer.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        fresh = not self.path.exists()
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if fresh:
            db.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False
            )
            self._readers.append(db)
        return db

    def append(self, frames: Iterable[tuple[protocol.Frame, bytes | memoryview]]) -> None:
        """Write ``frames`` (with their bytes) in one transaction; on failure, write none.

        Raises StoreError naming the cause (the database is then as it was before).
        """
        now = time.time()
        rows, seqs = [], {}
        for frame, data in frames:
            seqs[frame.cid] = frame.seq
            if frame.op == "sync":
                continue
            replace = frame.op == "plot" and not frame.opts.get("append")
            step = frame.opts.get("step")
            rows.append(
                (
                    frame.op,
                    frame.name,
                    replace,
                    "fig" in frame.opts,
                    step if type(step) is int else None,
                    now,
                    data,
                )
            )
        db = self._writer
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO frames (op, plot, replace, fig, step, time, frame) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.executemany(
                "INSERT INTO clients (cid, seq) VALUES (?, ?) "
                "ON CONFLICT (cid) DO UPDATE SET seq = max(seq, excluded.seq)",
                seqs.items(),
            )
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"cannot store frames of run {self.path.stem!r}: {exc}") from exc
        self._written += sum(len(row[-1]) for row in rows)
        if self._written > self.budget // 16:
            self._written = 0
            try:
                self.thin()
            except sqlite3.Error as exc:  # the frames are stored: thinning waits for later
                log.warning("run %r: could not thin its history: %s", self.path.stem, exc)

    def used(self) -> int:
        """Bytes the run's frames take in its database (free pages aside)."""
        db = self._writer
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        (free,) = db.execute("PRAGMA freelist_count").fetchone()
        (size,) = db.execute("PRAGMA page_size").fetchone()
        return int((pages - free) * size)

    def thin(self) -> int:
        """Keep the run within its budget: past it, thin the history of the plots that take
        most, evenly, keeping each one's first and latest frames (and those that set
        fig_kwargs); a plot that takes less than its fair share keeps all of it, and appended
        data, which pages show, is never thinned. Returns the frames deleted."""
        excess = self.used() - self.budget
        if excess <= 0:
            return 0
        db = self._writer
        sizes = {
            plot: (total, history)
            for plot, total, history in db.execute(
                "SELECT plot, sum(length(frame)), "
                "sum(CASE WHEN replace AND NOT fig THEN length(frame) ELSE 0 END) "
                "FROM frames WHERE op = 'plot' GROUP BY plot"
            )
        }
        doomed: list[int] = []
        for plot, keep in _shares(sizes, excess).items():
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM frames WHERE plot = ? AND replace AND NOT fig ORDER BY id",
                    (plot,),
                )
            ]
            doomed += _thinned(ids, keep)
        db.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(doomed), 500):
                chunk = doomed[start : start + 500]
                marks = ",".join("?" * len(chunk))
                db.execute(f"DELETE FROM frames WHERE id IN ({marks})", chunk)
            db.execute("COMMIT")
        except sqlite3.Error:
            db.execute("ROLLBACK")
            raise
        if self.used() > self.budget and not self._over:
            self._over = True
            log.warning(
                "run %r takes %d MB, over its budget of %d MB (--max_run_gb), in data that "
                "pages show: its appends are kept whole",
                self.path.stem,
                self.used() // 2**20,
                self.budget // 2**20,
            )
        log.info("run %r: thinned %d frames to stay within its budget", self.path.stem, len(doomed))
        return len(doomed)

    def last_seqs(self) -> dict[str, int]:
        """The last sequence number stored of each client, to recognise what it resends."""
        return dict(self._reader().execute("SELECT cid, seq FROM clients"))

    def current(self) -> Iterator[protocol.Frame]:
        """The frames that make what the run shows now: its last layout first (as it applies,
        with the cells others laid out), then each plot's frames since its last replace (and
        its last fig_kwargs), in order; none from before a clear."""
        db = self._reader()
        (cleared,) = db.execute(
            "SELECT coalesce(max(id), 0) FROM frames WHERE op = 'clear'"
        ).fetchone()
        (layout,) = db.execute(
            "SELECT max(id) FROM frames WHERE op = 'layout' AND id > ?", (cleared,)
        ).fetchone()
        if layout is None:
            return  # nothing can be placed
        (data,) = db.execute("SELECT frame FROM frames WHERE id = ?", (layout,)).fetchone()
        try:
            placed = sorted(protocol.decode(data, protocol.TRUSTED_LIMITS).opts.get("cells", {}))
        except ProtocolError:
            placed = []
        plots = db.execute(
            """
            WITH starts AS (
                SELECT plot, coalesce(max(CASE WHEN replace THEN id END), :cleared) AS start,
                       max(CASE WHEN fig THEN id END) AS fig
                FROM frames WHERE op = 'plot' AND id > :cleared
                AND plot IN (SELECT value FROM json_each(:placed)) GROUP BY plot
            )
            SELECT fig FROM starts WHERE fig < start
            UNION SELECT frames.id FROM frames JOIN starts USING (plot)
                  WHERE frames.id >= starts.start
            ORDER BY 1
            """,
            {"cleared": cleared, "placed": json.dumps(placed)},
        )
        ids = [layout] + [row[0] for row in plots]
        for start in range(0, len(ids), 512):  # blobs by id, a few at a time
            chunk = ids[start : start + 512]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT id, time, step, frame FROM frames WHERE id IN ({marks})"
            rows = db.execute(query, chunk).fetchall()
            order = {frame_id: i for i, frame_id in enumerate(chunk)}
            yield from self._frames(sorted(rows, key=lambda row: order[row[0]]))

    def latest_at(self, plot: str, frame_id: int) -> Stored | None:
        """The plot's last frame at or before ``frame_id`` (None if it has none)."""
        rows = self._reader().execute(
            "SELECT id, time, step, frame FROM frames WHERE plot = ? AND id <= ? "
            "ORDER BY id DESC LIMIT 1",
            (plot, frame_id),
        )
        return next(self._stored(rows), None)

    def frames(self, plot: str, first: int = 0, last: int | None = None) -> Iterator[Stored]:
        """The plot's frames with ids in ``[first, last]``, in order."""
        rows = self._reader().execute(
            "SELECT id, time, step, frame FROM frames WHERE plot = ? AND id BETWEEN ? AND ? "
            "ORDER BY id",
            (plot, first, last if last is not None else 2**62),
        )
        return self._stored(rows)

    def _frames(self, rows: Iterable[_Row]) -> Iterator[protocol.Frame]:
        for stored in self._stored(rows):
            yield stored.frame

    def _stored(self, rows: Iterable[_Row]) -> Iterator[Stored]:
        damaged: list[int] = []
        for frame_id, at, step, data in rows:
            try:
                frame = protocol.decode(data, protocol.TRUSTED_LIMITS)
            except ProtocolError:  # damaged on disk, or another streamvis version's
                damaged.append(frame_id)
                continue
            yield Stored(frame_id, at, step, frame)
        if damaged:
            log.error(
                "run %r: %d stored frames are damaged and were skipped (ids %d to %d of %s)",
                self.path.stem,
                len(damaged),
                damaged[0],
                damaged[-1],
                self.path.name,
            )

    def close(self) -> None:
        """Close the database: its readers and its writer."""
        for reader in self._readers:
            reader.close()
        self._readers.clear()
        self._writer.close()


_Row = tuple[int, float, "int | None", bytes]


def _shares(sizes: dict[str, tuple[int, int]], excess: int) -> dict[str, float]:
    """For each plot to thin, the fraction of its replace history to keep so that about
    ``excess`` bytes go. ``sizes`` holds each plot's (total, thinnable history) bytes. Every
    plot may keep up to one equal share of what stays (water-filling): a plot below it keeps
    everything, one above it gives up its history down to the share (or all of it, but its
    first and latest frames, if its appends alone exceed the share)."""
    total = sum(size for size, _ in sizes.values())
    remaining, share = max(total - excess, 0), 0.0
    order = sorted(sizes.items(), key=lambda item: item[1][0])
    for i, (_, (size, _)) in enumerate(order):  # smallest first: each keeps all it can
        share = remaining / (len(order) - i)
        if size > share:
            break
        remaining -= size
    else:
        return {}
    keep = {}
    for plot, (size, history) in order:
        if size > share and history > 0:
            fixed = size - history  # appends, first replaces, fig_kwargs: never thinned
            keep[plot] = min(1.0, max(share - fixed, 0.0) / history)
    return keep


def _thinned(ids: list[int], keep: float) -> list[int]:
    """The ids to delete so that about ``keep`` of them stay, spread evenly over the span of
    ids (not over those left by earlier thinning), the first and the last always kept."""
    if len(ids) <= 2:
        return []
    count = max(2, round(len(ids) * keep))
    span = np.asarray(ids)
    grid = np.linspace(span[0], span[-1], count)
    right = np.clip(np.searchsorted(span, grid), 1, len(span) - 1)
    nearest = np.where(grid - span[right - 1] <= span[right] - grid, right - 1, right)
    kept = set(span[nearest].tolist())
    return [i for i in ids if i not in kept]


def _files(path: Path) -> list[Path]:
    """A database's file and SQLite's files beside it."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


class Store:
    """The runs under ``DATA_DIR/runs/``, a database each."""

    def __init__(self, directory: Path, budget: int = DEFAULT_BUDGET) -> None:
        self.directory, self.budget = directory, budget
        self.folder = directory / FOLDER
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArgumentError(
                f"cannot keep runs in {str(directory)!r} ({exc.strerror or exc}): "
                "give --data_dir a folder this user may write, or run with --no_persist"
            ) from exc
        self._runs: dict[str, RunStore] = {}
        self._lock = threading.Lock()
        self._migrate()

    def runs(self) -> list[str]:
        """The runs that have a database, by name."""
        names = (p.name[: -len(SUFFIX)] for p in self.folder.glob(f"*{SUFFIX}"))
        return sorted(n for n in names if is_name(n))

    def open(self, run: str) -> RunStore:
        """The database of ``run`` (created if new; checked, and rebuilt if damaged)."""
        with self._lock:
            store = self._runs.get(run)
            if store is None:
                path = self.folder / f"{check_name(run, 'run name')}{SUFFIX}"
                store = self._runs[run] = _checked(path, self.budget)
            return store

    def delete(self, run: str) -> None:
        """Delete the run's database."""
        with self._lock:
            store = self._runs.pop(run, None)
        if store is not None:
            store.close()
        for path in _files(self.folder / f"{check_name(run, 'run name')}{SUFFIX}"):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Close every open database."""
        with self._lock:
            stores, self._runs = list(self._runs.values()), {}
        for store in stores:
            store.close()

    def _migrate(self) -> None:
        """Copy the runs of streamvis 0.1 logs (``RUN.log`` beside ``runs/``) in, once."""
        for path in sorted(self.directory.glob(f"*{_LEGACY}")):
            run = path.name[: -len(_LEGACY)]
            if not is_name(run) or (self.folder / f"{run}{SUFFIX}").exists():
                continue
            try:
                count = self._migrate_one(run, path)
            except (OSError, StoreError) as exc:  # left as it was, to try at the next start
                log.error("could not migrate run %r from %s: %s", run, path.name, exc)
                continue
            if count:
                path.rename(path.with_name(path.name + ".migrated"))
                log.info("migrated run %r from %s: %d frames", run, path.name, count)

    def _migrate_one(self, run: str, path: Path) -> int:
        """Copy one 0.1 log into a database under a temporary name, renamed once whole (none
        if the file holds no streamvis frame: not ours, it is left alone)."""
        frames = legacy_frames(path)
        first = next(frames, None)
        if first is None:
            return 0
        target = self.folder / f"{run}{SUFFIX}"
        partial = target.with_name(target.name + ".migrating")
        for old in _files(partial):
            old.unlink(missing_ok=True)
        store, count, chunk = RunStore(partial, self.budget), 0, [first]
        try:
            for frame in frames:
                chunk.append(frame)
                if len(chunk) == 1024:
                    store.append(chunk)
                    count, chunk = count + len(chunk), []
            store.append(chunk)
            count += len(chunk)
        finally:
            store.close()
        os.replace(partial, target)
        for old, new in zip(_files(partial)[1:], _files(target)[1:], strict=True):
            if old.exists():
                os.replace(old, new)
        return count


def _checked(path: Path, budget: int) -> RunStore:
    """Open ``path``; if SQLite finds it damaged, keep it aside and rebuild what is readable."""
    if not path.exists():
        return RunStore(path, budget)
    try:
        problems = damage(path)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open run {path.stem!r} now: {exc}") from exc
    if not problems:
        return RunStore(path, budget)
    kept = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for old in _files(path):
        if old.exists():
            os.replace(old, kept.with_name(kept.name + old.name[len(path.name) :]))
    rescued = with_layout(list(readable(kept)), path.stem)
    store = RunStore(path, budget)
    if rescued:
        store.append(rescued)
    log.error(
        "run %r: its database is damaged (%s%s); kept as %s, %d frames could be read and "
        "are served",
        path.stem,
        "; ".join(problems[:3]),
        f"; and {len(problems) - 3} more problems" if len(problems) > 3 else "",
        kept.name,
        len(rescued),
    )
    return store
