"""Durable runs: the folder of their databases (one per run, :mod:`runstore`).

The store owns ``DATA_DIR/runs/`` and only the files it names there (``RUN.sqlite``,
SQLite's ``-wal`` and ``-shm`` beside it, and the folder ``RUN.sqlite-segments`` of large
frames' bytes); nothing else under ``DATA_DIR`` is opened, except
run logs of streamvis 0.1 (``RUN.log``), which are copied in once and then renamed
``RUN.log.migrated``, never changed.

A database that its own ``PRAGMA quick_check`` finds damaged is kept as it is (with its
segments), renamed ``RUN.sqlite.damaged-TIME``; the frames that can still be read go into a
new database for the run, and the damage is reported once with its extent. One damaged run
stops no other. Damage in a segment file costs the frames whose bytes it touched (each has
its crc32), reported when they are read.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

from ._errors import ArgumentError, StoreError
from ._protocol import check_name, is_name
from ._rescue import damage, legacy_frames, readable, with_layout
from ._runstore import DEFAULT_BUDGET, SEGMENTS, RunStore
from ._segments import Segments

__all__ = ["FOLDER", "SUFFIX", "Store", "run_files", "run_names"]

log = logging.getLogger("streamvis.store")

FOLDER = "runs"
SUFFIX = ".sqlite"
_LEGACY = ".log"


def run_files(path: Path) -> list[Path]:
    """A database's file, SQLite's files beside it, and its folder of segments."""
    return [path.with_name(path.name + end) for end in ("", "-wal", "-shm", SEGMENTS)]


def run_names(folder: Path) -> list[str]:
    """The runs that have a database in ``folder``, by name."""
    found = folder.glob(f"*{SUFFIX}") if folder.is_dir() else ()
    return sorted(n for p in found if is_name(n := p.name[: -len(SUFFIX)]))


def _remove(path: Path) -> None:
    """Delete one of a database's :func:`run_files`."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


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
        return run_names(self.folder)

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
        for path in run_files(self.folder / f"{check_name(run, 'run name')}{SUFFIX}"):
            _remove(path)

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
        for old in run_files(partial):
            _remove(old)
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
        for old, new in zip(run_files(partial)[1:], run_files(target)[1:], strict=True):
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
    for old in run_files(path):
        if old.exists():
            os.replace(old, kept.with_name(kept.name + old.name[len(path.name) :]))
    rescued = with_layout(
        list(readable(kept, Segments(kept.with_name(kept.name + SEGMENTS)))), path.stem
    )
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
