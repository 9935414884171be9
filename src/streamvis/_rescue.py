"""Reading what can be read: a damaged run database, and run logs of streamvis 0.1.

Pure functions of files, opened read-only: the store (:mod:`store`) decides what to do with
what they find.
"""

from __future__ import annotations

import sqlite3
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import _protocol as protocol
from ._errors import ProtocolError, StoreError
from ._segments import PLACE_COLUMNS, Place, Segments, close_all

__all__ = ["damage", "legacy_frames", "readable", "with_layout"]


_RECORD = struct.Struct(">II")  # a 0.1 log record: length, crc32


_DAMAGE = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}  # what damage looks like, not a lock or a limit


def _is_damage(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the file is damaged (not locked, or short of handles)."""
    name = getattr(exc, "sqlite_errorname", None)  # Python 3.11 and later
    if name is not None:
        return name in _DAMAGE
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)


def damage(path: Path) -> list[str]:
    """What SQLite's own integrity check finds wrong with the database at ``path`` (none:
    an empty list). Raises sqlite3.Error if it cannot tell (locked, no file handles, no
    permission): that is no damage to repair."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            # quick_check reads every page and checks its structure, as integrity_check
            # does, but not that indexes match their table: a third of the time (0.36 s
            # against 1.04 s for a run of 1e6 steps), which a start-up waits for.
            problems = [str(row[0]) for row in db.execute("PRAGMA quick_check")]
        finally:
            db.close()
    except sqlite3.Error as exc:
        if _is_damage(exc):
            return [str(exc)]
        raise
    return [] if problems == ["ok"] else problems


def with_layout(
    frames: list[tuple[protocol.Frame, bytes]], run: str
) -> list[tuple[protocol.Frame, bytes]]:
    """``frames``, led by a layout of their plots in a row if damage took the run's own."""
    if not frames or any(frame.op == "layout" for frame, _ in frames):
        return frames
    names = list(dict.fromkeys(f.name for f, _ in frames if f.op == "plot" and f.name))
    cells = {name: [i // 3, i % 3, 1, 1] for i, name in enumerate(names)}
    first = frames[0][0]
    layout = protocol.Frame("layout", run, first.cid, first.seq - 1, opts={"cells": cells})
    return [(layout, protocol.encode(layout)), *frames]


def readable(path: Path, segments: Segments) -> Iterator[tuple[protocol.Frame, bytes]]:
    """Every frame of a damaged database that can still be read, in order (with the bytes
    of large ones from its ``segments``)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return
    files: dict[int, int] = {}
    try:
        select = f"SELECT id, frame, {_places(db)} FROM frames"
        last = 0
        while True:
            try:
                query = f"{select} WHERE id > ? ORDER BY id LIMIT 1"
                row = db.execute(query, (last,)).fetchone()
            except sqlite3.Error:
                row = _skip_damage(db, select, last)
            if row is None:
                return
            last, data, *place = row
            try:
                if place[0] is not None:
                    data = segments.read(Place(*place), files)
                yield protocol.decode(data, protocol.TRUSTED_LIMITS), data
            except (OSError, StoreError, ProtocolError):
                continue
    finally:
        close_all(files)
        db.close()


def _places(db: sqlite3.Connection) -> str:
    """The columns that say where a frame's bytes are, or NULLs in a database of before
    segment files (or one too damaged to say)."""
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(frames)")}
    except sqlite3.Error:
        columns = set()
    if "seg" in columns:
        return ", ".join(PLACE_COLUMNS)
    return "NULL, NULL, NULL, NULL"


def _skip_damage(db: sqlite3.Connection, select: str, last: int) -> tuple[Any, ...] | None:
    """The first readable row after ``last``, probing past a damaged stretch of ids."""
    for probe in range(last + 1, last + 1 + 2**16):
        try:
            row = db.execute(f"{select} WHERE id = ?", (probe,)).fetchone()
        except sqlite3.Error:
            continue
        if row is not None:
            return tuple(row)
    return None


def legacy_frames(path: Path) -> Iterator[tuple[protocol.Frame, bytes]]:
    """The frames of a streamvis 0.1 run log (``uint32 length | uint32 crc32 | frame``),
    up to the first record that is not one; nothing if the file is not such a log."""
    with open(path, "rb") as file:  # read a record at a time: a foreign file may be huge
        while len(prefix := file.read(_RECORD.size)) == _RECORD.size:
            length, crc = _RECORD.unpack(prefix)
            if length > protocol.TRUSTED_LIMITS.max_frame_bytes:
                return
            body = file.read(length)
            if len(body) < length or zlib.crc32(body) != crc:
                return
            try:
                frame = protocol.decode(body, protocol.TRUSTED_LIMITS)
            except ProtocolError:
                return
            yield frame, body  # a sync record carries a client's last seq
