"""Large frames' bytes in files of their own beside a run's database: written once, not twice.

SQLite writes a blob twice, into its log and later into the database, and syncs both at
each checkpoint: 256 KiB frames stored at ~400 MB/s that way, against ~2 GB/s appended to a
plain file. So a frame of at least :data:`SEGMENT_MIN` bytes is appended to the run's
current segment file (``RUN.sqlite-segments/NNNNNNNN.seg``), and its row in the database
keeps only where it is (:class:`Place`) and its crc32. The row commits after the bytes are
written: a crash in between leaves bytes nothing names (harmless), never a row naming
nothing. A power loss may lose bytes the kernel had not yet written, as it may lose SQLite's
last commits; the crc32 then tells, and only that frame is lost.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from ._errors import StoreError

__all__ = ["PLACE_COLUMNS", "SEGMENT_MAX", "SEGMENT_MIN", "Place", "Segments", "close_all"]

SEGMENT_MIN = 4096  # frames of at least this many bytes go to a segment file
SEGMENT_MAX = 256 * 2**20  # past this size a segment file is synced and a new one begun
_SUFFIX = ".seg"
_IOV = 512  # buffers per writev call (IOV_MAX is 1024 on Linux)


@dataclass(frozen=True)
class Place:
    """Where a frame's bytes are: ``size`` bytes at ``pos`` of segment ``seg``."""

    seg: int
    pos: int
    size: int
    crc: int


PLACE_COLUMNS = [f.name for f in fields(Place)]  # as a run database's frames keep them


class Segments:
    """A run's segment files. Writes from one thread at a time; reads from any."""

    def __init__(self, folder: Path, max_bytes: int = SEGMENT_MAX) -> None:
        self.folder = folder
        self.max_bytes = max(min(max_bytes, SEGMENT_MAX), 2**16)  # the size to begin anew at
        self._fd: int | None = None  # the segment being written, opened at the first write
        self._seg = 0
        self._end = 0

    @property
    def current(self) -> int:
        """The segment being written (0 before the first write)."""
        return self._seg

    def sizes(self) -> dict[int, int]:
        """Every segment file's size in bytes, by number."""
        if not self.folder.is_dir():
            return {}
        found = {}
        for path in self.folder.glob(f"*{_SUFFIX}"):
            if path.stem.isdigit():
                found[int(path.stem)] = path.stat().st_size
        return found

    def write(self, payloads: Sequence[bytes | memoryview]) -> list[Place]:
        """Append ``payloads`` to the current segment (a new one past ``max_bytes``). On failure
        (disk full, I/O error) the file is cut back to where it was, and StoreError raised."""
        fd = self._open()
        places, views = [], []
        for data in payloads:
            view = memoryview(data).cast("B")
            places.append(Place(self._seg, self._end, view.nbytes, zlib.crc32(view)))
            self._end += view.nbytes
            views.append(view)
        try:
            for first in range(0, len(views), _IOV):
                _write_all(fd, views[first : first + _IOV])
        except OSError as exc:
            self.undo(places)
            raise StoreError(f"cannot write {self.folder.name}/{self._seg:08d}: {exc}") from exc
        return places

    def undo(self, places: Sequence[Place]) -> None:
        """Cut the current segment back to before ``places``, the last ones written (their
        rows did not commit)."""
        if not places or self._fd is None or places[0].seg != self._seg:
            return
        self._end = places[0].pos
        with contextlib.suppress(OSError):  # bytes past the end are named by nothing: harmless
            os.ftruncate(self._fd, self._end)

    def _open(self) -> int:
        """The current segment's file, begun anew past ``max_bytes``."""
        if self._fd is not None and self._end < self.max_bytes:
            return self._fd
        if self._fd is None:
            try:
                self.folder.mkdir(exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot make {self.folder.name}: {exc}") from exc
            sizes = self.sizes()
            self._seg = max(sizes, default=0)
            if not self._seg or sizes[self._seg] >= self.max_bytes:
                self._seg += 1
        else:  # left to the kernel to write out: syncing 256 MiB would stall the writes 0.1 s
            self._release(sync=False)
            self._seg += 1
        try:
            self._fd = os.open(self.path(self._seg), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open {self.folder.name}/{self._seg:08d}: {exc}") from exc
        self._end = os.fstat(self._fd).st_size
        return self._fd

    def path(self, seg: int) -> Path:
        """The file of segment ``seg``."""
        return self.folder / f"{seg:08d}{_SUFFIX}"

    def read(self, place: Place, files: dict[int, int], check: bool = True) -> bytes:
        """The bytes at ``place``, checked against its crc32 unless ``check`` is false.
        ``files`` keeps the segments opened for reading (the caller closes them:
        :func:`close_all`). Raises OSError if the file is gone, StoreError if the bytes are
        short or not what was written."""
        fd = files.get(place.seg)
        if fd is None:
            fd = files[place.seg] = os.open(self.path(place.seg), os.O_RDONLY)
        data = os.pread(fd, place.size, place.pos)
        if check and (len(data) != place.size or zlib.crc32(data) != place.crc):
            raise StoreError(
                f"{self.folder.name}/{place.seg:08d}: {place.size} bytes at {place.pos} are damaged"
            )
        return data

    def remove(self, seg: int) -> None:
        """Delete segment ``seg`` (one nothing names any more)."""
        if seg == self._seg:
            self._release(sync=False)
        self.path(seg).unlink(missing_ok=True)

    def delete(self) -> None:
        """Delete every segment, and their folder."""
        self._release(sync=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def close(self) -> None:
        """Sync and close the segment being written; the next write opens it again."""
        self._release(sync=True)

    def _release(self, sync: bool) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            if sync:
                with contextlib.suppress(OSError):  # nothing more is written; crc32s tell
                    os.fdatasync(fd)
            os.close(fd)


def close_all(files: dict[int, int]) -> None:
    """Close the segments :meth:`Segments.read` opened."""
    for fd in files.values():
        os.close(fd)
    files.clear()


def _write_all(fd: int, views: list[memoryview]) -> None:
    """Write every byte of ``views``, in one call where the system takes them all."""
    written = os.writev(fd, views)
    for view in views:
        if written >= view.nbytes:
            written -= view.nbytes
            continue
        rest = view[written:]
        written = 0
        while rest.nbytes:
            rest = rest[os.write(fd, rest) :]
