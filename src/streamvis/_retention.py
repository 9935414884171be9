"""Keeping a run within its disk budget: which frames go (the largest plots' oldest
replaces, evenly), and freeing their bytes in segment files. :class:`Retention` is mixed
into :class:`_runstore.RunStore`, which opens the database."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import numpy as np

from ._errors import StoreError
from ._segments import PLACE_COLUMNS, Place, Segments, close_all

__all__ = ["Retention", "chosen", "shares", "thinned"]

log = logging.getLogger("streamvis.store")


class Retention:
    """Thinning a run's history to its budget (mixed into RunStore, which provides these)."""

    path: Path
    budget: int
    _writer: sqlite3.Connection
    _segments: Segments
    _over: bool  # warned that appended data alone exceeds the budget

    def used(self) -> int:
        """Bytes the run's frames take: in its database (free pages aside), and in segment
        files (bytes of frames deleted aside: :meth:`_compact` frees those)."""
        db = self._writer
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        (free,) = db.execute("PRAGMA freelist_count").fetchone()
        (size,) = db.execute("PRAGMA page_size").fetchone()
        return int((pages - free) * size) + sum(self._held().values())

    def _held(self) -> dict[int, int]:
        """The bytes of frames each segment holds, by segment."""
        query = "SELECT seg, sum(size) FROM frames WHERE seg IS NOT NULL GROUP BY seg"
        return {int(seg): int(size) for seg, size in self._writer.execute(query)}

    def thin(self) -> int:
        """Keep the run within its budget: past it, thin the history of the plots that take
        most, evenly, keeping each one's first and latest frames (and those that set
        fig_kwargs); a plot that takes less than its fair share keeps all of it, and appended
        data, which pages show, is never thinned. Returns the frames deleted."""
        excess = self.used() - self.budget
        if excess <= 0:
            return 0
        db = self._writer
        doomed = chosen(db, excess)
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
        self._compact()
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

    def _compact(self) -> None:
        """Free the bytes of deleted frames in segment files, down to an eighth of the budget:
        the segments with most of them have their frames moved into the current segment,
        and are deleted. The newest segment, still written, is left as it is."""
        held, sizes = self._held(), self._segments.sizes()
        newest = max(sizes, default=0)
        dead = {seg: size - held.get(seg, 0) for seg, size in sizes.items() if seg != newest}
        excess = sum(dead.values()) - self.budget // 8
        for seg in sorted(dead, key=lambda seg: dead[seg] / max(sizes[seg], 1), reverse=True):
            if excess <= 0:
                break
            self._move_out(seg)
            excess -= dead[seg]

    def _move_out(self, seg: int) -> None:
        """Move the frames of segment ``seg`` into the current one, then delete it. The new
        places commit with a note that ``seg`` is to go, so a crash before it is deleted
        leaves it to the next open (:meth:`_forget_removed`)."""
        db, files = self._writer, dict[int, int]()
        query = f"SELECT id, {', '.join(PLACE_COLUMNS)} FROM frames WHERE seg = ? ORDER BY id"
        rows = [(frame_id, Place(*place)) for frame_id, *place in db.execute(query, (seg,))]
        moved: list[tuple[int, int, int]] = []
        written: list[Place] = []
        try:
            for first in range(0, len(rows), 64):  # 16 MiB at a time, for 256 KiB frames
                part = rows[first : first + 64]
                data = [self._segments.read(place, files, check=False) for _, place in part]
                places = self._segments.write(data)
                written += places
                moved += [
                    (new.seg, new.pos, frame_id)
                    for (frame_id, _), new in zip(part, places, strict=True)
                ]
            db.execute("BEGIN IMMEDIATE")
            db.executemany("UPDATE frames SET seg = ?, pos = ? WHERE id = ?", moved)
            db.execute("INSERT OR IGNORE INTO removed (seg) VALUES (?)", (seg,))
            db.execute("COMMIT")
        except (OSError, StoreError, sqlite3.Error) as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._segments.undo(written)
            log.warning("run %r: could not free thinned bytes of segment %d: %s",
                        self.path.stem, seg, exc)  # fmt: skip
            return
        finally:
            close_all(files)
        self._forget_removed()

    def _forget_removed(self) -> None:
        """Delete the segments nothing names any more (the moves out of them committed)."""
        db = self._writer
        for (seg,) in db.execute("SELECT seg FROM removed").fetchall():
            self._segments.remove(seg)
            db.execute("DELETE FROM removed WHERE seg = ?", (seg,))


def chosen(db: sqlite3.Connection, excess: int) -> list[int]:
    """The ids of the frames to delete from a run's database for about ``excess`` bytes."""
    sizes = {
        plot: (total, history)
        for plot, total, history in db.execute(
            "SELECT plot, sum(coalesce(size, length(frame))), "
            "sum(CASE WHEN replace AND NOT fig THEN coalesce(size, length(frame)) ELSE 0 END) "
            "FROM frames WHERE op = 'plot' GROUP BY plot"
        )
    }
    doomed: list[int] = []
    for plot, keep in shares(sizes, excess).items():
        query = "SELECT id FROM frames WHERE plot = ? AND replace AND NOT fig ORDER BY id"
        doomed += thinned([row[0] for row in db.execute(query, (plot,))], keep)
    return doomed


def shares(sizes: dict[str, tuple[int, int]], excess: int) -> dict[str, float]:
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


def thinned(ids: list[int], keep: float) -> list[int]:
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
