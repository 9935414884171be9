"""Reading a run's history back: frames by id, by step and by time, and the ranges of its
steps and times. :class:`History` is mixed into :class:`_runstore.RunStore`, which opens
the database; a frame's bytes are in its row or in a segment file (:mod:`_segments`)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import _protocol as protocol
from ._errors import ProtocolError, StoreError
from ._segments import PLACE_COLUMNS, Place, Segments, close_all

__all__ = ["READ", "History", "Stored", "read_only"]

log = logging.getLogger("streamvis.store")

READ = "SELECT id, time, step, sent, rows, frame, seg, pos, size, crc FROM frames"  # _stored


def read_only(path: Path, immutable: bool = False) -> sqlite3.Connection:
    """A connection that only reads ``path`` (by URI, so that any folder name works), from
    any thread; ``immutable``: of a database nothing writes now (no log index is needed)."""
    mode = "immutable=1" if immutable else "mode=ro"
    return sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, check_same_thread=False)


@dataclass(frozen=True)
class Stored:
    """A frame read back, with where it stands in its run's history."""

    id: int
    time: float  # when the server received it
    step: int | None
    frame: protocol.Frame
    sent: float | None = None  # when the client made it, by its clock
    rows: int | None = None  # an append plot's rows once it was applied (if recorded)


class History:
    """Frames read back from a run's database (mixed into RunStore, which provides these)."""

    path: Path
    _segments: Segments

    def _reader(self) -> sqlite3.Connection:
        raise NotImplementedError

    def step_range(self, plots: Iterable[str]) -> tuple[int, int] | None:
        """The least and greatest step of the frames of ``plots`` (None if none has one)."""
        low = high = None
        query = "SELECT min(step), max(step) FROM frames WHERE plot = ? AND step IS NOT NULL"
        for plot in plots:  # by index: each plot's ends of its steps
            first, last = self._reader().execute(query, (plot,)).fetchone()
            if first is not None:
                low = first if low is None else min(low, first)
                high = last if high is None else max(high, last)
        return None if low is None or high is None else (int(low), int(high))

    def step_times(self, plots: Iterable[str], samples: int) -> list[tuple[int, float]]:
        """When the run first reached about ``samples`` steps spread evenly over its range
        (by the client's clock, else at arrival), in order: the first frame of ``plots`` at
        or after each, found by the index of steps, so the cost follows ``samples`` (and
        the plots), not the run's length."""
        names = list(plots)
        span = self.step_range(names)
        if span is None:
            return []
        db, (low, high), n = self._reader(), span, max(samples, 2)
        probe = (
            "SELECT step, coalesce(sent, time) FROM frames WHERE plot = ? AND step IS NOT NULL "
            "AND step >= ? ORDER BY step, id LIMIT 1"
        )
        found: dict[int, float] = {}
        for target in sorted({low + (high - low) * k // (n - 1) for k in range(n)}):
            rows = [db.execute(probe, (name, target)).fetchone() for name in names]
            if rows := [r for r in rows if r is not None]:
                step, made = min(rows, key=lambda r: (r[0], r[1]))
                found.setdefault(int(step), float(made))
        return sorted(found.items())

    def nonfinite(self, plot: str, since: int, marks: int) -> tuple[int, list[tuple[float, int]]]:
        """A line plot's non-finite values in frames from id ``since`` on: how many, and
        the first ``marks`` frames that had them (their x, their count)."""
        db = self._reader()
        query = "SELECT coalesce(sum(n), 0) FROM nonfinite WHERE plot = ? AND id >= ?"
        (total,) = db.execute(query, (plot, since)).fetchone()
        found = db.execute(
            "SELECT x, n FROM nonfinite WHERE plot = ? AND id >= ? ORDER BY id LIMIT ?",
            (plot, since, marks),
        ).fetchall()
        return int(total), [(float(x), int(n)) for x, n in found]

    def time_range(self) -> tuple[float, float] | None:
        """When the run's first and last plot frames were made (by the client's clock, else
        at arrival); None if it has none."""
        query = "SELECT coalesce(sent, time) FROM frames WHERE op = 'plot' ORDER BY id {} LIMIT 1"
        db = self._reader()
        first, last = (db.execute(query.format(o)).fetchone() for o in ("ASC", "DESC"))
        return None if first is None or last is None else (float(first[0]), float(last[0]))

    def latest_at_time(self, plot: str, at: float) -> Stored | None:
        """The plot's last frame made at or before ``at`` (seconds since the epoch, by the
        client's clock, else at arrival): found by halving the run's frames, which arrive
        in the order they were made, near enough (no index: none costs the writes)."""
        db = self._reader()
        low, high = db.execute("SELECT min(id), max(id) FROM frames").fetchone()
        if low is None or high is None:
            return None
        probe = (  # plot frames only: the client's clock made them (layouts carry none)
            "SELECT id, coalesce(sent, time) FROM frames WHERE id >= ? AND op = 'plot' "
            "ORDER BY id LIMIT 1"
        )
        found = None  # the last frame id known to be made at or before ``at``
        for _ in range(64):  # halving: at most log2 of the ids
            if low > high:
                break
            row = db.execute(probe, ((low + high) // 2,)).fetchone()
            if row is None or row[0] > high:
                high = (low + high) // 2 - 1
            elif row[1] <= at:
                found, low = row[0], row[0] + 1
            else:
                high = (low + high) // 2 - 1
        return None if found is None else self.latest_at(plot, found)

    def frames_of(self, plot: str, first: int, last: int) -> list[protocol.Frame]:
        """The plot's frames ``first`` to ``last``, which must all be there. Raises
        StoreError if one is gone or damaged."""
        frames = list(self.frames(plot, first, last))
        if not frames or frames[0].id != first or frames[-1].id != last:
            raise StoreError(
                f"run {self.path.stem!r}: frames {first} to {last} of plot {plot!r} are gone"
            )
        return [stored.frame for stored in frames]

    def latest_at(self, plot: str, frame_id: int) -> Stored | None:
        """The plot's last frame at or before ``frame_id`` (None if it has none)."""
        rows = self._reader().execute(
            f"{READ} WHERE plot = ? AND id <= ? ORDER BY id DESC LIMIT 1",
            (plot, frame_id),
        )
        return next(self._stored(rows), None)

    def latest_at_step(self, plot: str, step: int) -> Stored | None:
        """The plot's frame of the greatest step at or before ``step`` (the last to arrive,
        if several have it: a run resumed from a checkpoint sends steps again); None if it
        has none. Frames without a step are not found by step."""
        rows = self._reader().execute(
            f"{READ} WHERE plot = ? AND step IS NOT NULL AND step <= ? "
            "ORDER BY step DESC, id DESC LIMIT 1",
            (plot, step),
        )
        return next(self._stored(rows), None)

    def frames(self, plot: str, first: int = 0, last: int | None = None) -> Iterator[Stored]:
        """The plot's frames with ids in ``[first, last]``, in order."""
        rows = self._reader().execute(
            f"{READ} WHERE plot = ? AND id BETWEEN ? AND ? ORDER BY id",
            (plot, first, last if last is not None else 2**62),
        )
        return self._stored(rows)

    def _stored(self, rows: Iterable[_Row]) -> Iterator[Stored]:
        """The frames of ``rows`` (as :data:`READ` selects them) that can be read; the
        others are reported, once for the lot."""
        damaged: list[int] = []
        files: dict[int, int] = {}
        try:
            for frame_id, at, step, sent, held, data, seg, pos, size, crc in rows:
                try:
                    if seg is not None and pos is not None and size is not None:
                        data = self._payload(frame_id, Place(seg, pos, size, crc or 0), files)
                    frame = protocol.decode(data, protocol.TRUSTED_LIMITS)
                except (ProtocolError, StoreError) as exc:  # damaged, or another version's
                    log.debug("run %r: frame %d: %s", self.path.stem, frame_id, exc)
                    damaged.append(frame_id)
                    continue
                yield Stored(frame_id, at, step, frame, sent, held)
        finally:
            close_all(files)
        if damaged:
            log.error(
                "run %r: %d stored frames are damaged and were skipped (ids %d to %d of %s)",
                self.path.stem,
                len(damaged),
                damaged[0],
                damaged[-1],
                self.path.name,
            )

    def _payload(self, frame_id: int, place: Place, files: dict[int, int]) -> bytes:
        """A frame's bytes from its segment file; where that is gone, from where the frame
        was moved meanwhile (:meth:`_compact`). Raises StoreError if they cannot be read."""
        try:
            return self._segments.read(place, files)
        except OSError:
            pass
        row = self._reader().execute(f"SELECT {', '.join(PLACE_COLUMNS)} FROM frames WHERE id = ?",
                                     (frame_id,)).fetchone()  # fmt: skip
        try:
            if row is None or row[0] is None or Place(*row) == place:
                raise FileNotFoundError(str(self._segments.path(place.seg)))
            return self._segments.read(Place(*row), files)
        except OSError as exc:
            raise StoreError(f"frame {frame_id}'s bytes are gone: {exc}") from exc


_Row = tuple[
    int,
    float,
    "int | None",
    "float | None",
    "int | None",
    bytes,
    "int | None",
    "int | None",
    "int | None",
    "int | None",
]
