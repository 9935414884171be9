"""Durable runs: an append-only log of accepted frames per run, replayed at start.

Each record is ``uint32 length | uint32 crc32 | frame bytes`` (big-endian), written and
flushed to the OS before the frame is acknowledged, so a killed server loses nothing it
acknowledged. A torn last record (a crash mid-write) fails its length or CRC check and is
cut off with a warning. A server writes on a thread of its own (:class:`Writer`), so its
event loop goes on receiving meanwhile.

Replace-mode plots need only their latest frame: the log tracks which records are still live
(the layout, and per plot its last replace and the appends after it) and is rewritten with
only those once dead records outweigh them, so start-up time follows the data shown, not the
number of replacements. The rewrite ends with one ``sync`` record per client, which carries
its last sequence number, so duplicates are still recognised after a compaction.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import protocol
from .errors import ArgumentError, ProtocolError

log = logging.getLogger("streamvis.store")

_RECORD = struct.Struct(">II")
# Logs hold only frames the server accepted, under whatever limits it had then.
_TRUSTED = protocol.Limits(max_frame_bytes=2**62, max_header_bytes=2**30, max_arrays=2**16)
SUFFIX = ".log"
COMPACT_MIN_BYTES = 64 * 2**20


@dataclass(eq=False)
class _Liveness:
    """Which records of a run's log still matter, by (offset, length)."""

    layout: tuple[int, int] | None = None
    plots: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    figs: dict[str, tuple[int, int]] = field(default_factory=dict)  # last record with fig_kwargs
    live_bytes: int = 0
    total_bytes: int = 0

    def add(self, frame: protocol.Frame, offset: int, length: int) -> None:
        record = (offset, length)
        self.total_bytes += length
        if frame.op == "clear":
            self.layout, self.plots, self.figs, self.live_bytes = None, {}, {}, 0
            return
        if frame.op == "layout":
            self.live_bytes -= self.layout[1] if self.layout else 0
            self.layout = record
        elif frame.op == "plot" and frame.name is not None:
            records = self.plots.setdefault(frame.name, [])
            if not frame.opts.get("append"):
                self.live_bytes -= sum(n for _, n in records)
                records.clear()
            records.append(record)
            if "fig" in frame.opts:  # a plot's fig_kwargs travel only in the calls that set them
                self.figs[frame.name] = record
        else:
            return
        self.live_bytes += length

    def records(self) -> list[tuple[int, int]]:
        """Live records in the order to replay them: the layout first, then the plots' data."""
        data = sorted(
            {r for records in self.plots.values() for r in records} | set(self.figs.values())
        )
        return [self.layout, *data] if self.layout is not None else data

    def moved(self, offsets: dict[int, int]) -> _Liveness:
        """The same live records at new offsets (after a compaction wrote them elsewhere)."""
        layout = None if self.layout is None else (offsets[self.layout[0]], self.layout[1])
        plots = {k: [(offsets[o], n) for o, n in v] for k, v in self.plots.items()}
        figs = {k: (offsets[o], n) for k, (o, n) in self.figs.items()}
        return _Liveness(layout, plots, figs, self.live_bytes, self.live_bytes)


class RunLog:
    """The log file of one run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.live = _Liveness()
        self._file = open(path, "ab")  # noqa: SIM115 - lives as long as the run
        self._size = self._file.tell()

    def append(self, frame: protocol.Frame, data: bytes | memoryview) -> None:
        """Write one accepted frame; all of it reaches the OS before this returns."""
        self._file.write(_RECORD.pack(len(data), zlib.crc32(data)))
        self._file.write(data)  # a buffered writer writes it all (a raw one may stop short)
        self._file.flush()
        self.live.add(frame, self._size, _RECORD.size + len(data))
        self._size += _RECORD.size + len(data)

    def needs_compaction(self) -> bool:
        """Whether superseded records outweigh live ones (and are worth a rewrite)."""
        dead = self.live.total_bytes - self.live.live_bytes
        return dead > COMPACT_MIN_BYTES and dead > self.live.live_bytes

    def compact(self, last_seq: dict[str, int], run: str) -> None:
        """Rewrite the log with only its live records, then one sync record per client."""
        tmp = self.path.with_suffix(".compacting")
        offsets: dict[int, int] = {}
        with open(self.path, "rb") as old, open(tmp, "wb") as new:
            offset = 0
            for start, length in self.live.records():
                old.seek(start)
                new.write(old.read(length))
                offsets[start] = offset
                offset += length
            for cid, seq in last_seq.items():
                data = protocol.encode(protocol.Frame(op="sync", run=run, cid=cid, seq=seq))
                new.write(_RECORD.pack(len(data), zlib.crc32(data)) + data)
                offset += _RECORD.size + len(data)
            new.flush()
            os.fsync(new.fileno())
        self._file.close()
        os.replace(tmp, self.path)
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._size = offset
        self.live = self.live.moved(offsets)
        log.info("compacted the log of run %r to %d bytes", run, offset)

    def close(self) -> None:
        """Close the file; appending after this fails."""
        self._file.close()


def read_records(path: Path) -> Iterator[bytes]:
    """Yield the frames recorded in ``path``; cut off a torn or corrupt tail with a warning."""
    with open(path, "rb") as file:
        data = file.read()
    offset = 0
    while offset < len(data):
        if offset + _RECORD.size > len(data):
            break
        length, crc = _RECORD.unpack_from(data, offset)
        body = data[offset + _RECORD.size : offset + _RECORD.size + length]
        if len(body) < length or zlib.crc32(body) != crc:
            break
        yield body
        offset += _RECORD.size + length
    if offset < len(data):
        log.warning(
            "log %s ends with %d bytes of a torn or corrupt record (a crash mid-write?); "
            "skipping them: everything before them is replayed",
            path,
            len(data) - offset,
        )
        with open(path, "r+b") as file:
            file.truncate(offset)


class Store:
    """The data directory: one log per run, named ``RUN.log``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArgumentError(
                f"cannot keep runs in {str(directory)!r} ({exc.strerror or exc}): "
                "give --data_dir a folder this user may write, or run with --no_persist"
            ) from exc
        if not directory.is_dir():
            raise ArgumentError(f"--data_dir {str(directory)!r} is not a folder: name a folder")
        self._logs: dict[str, RunLog] = {}

    def runs(self) -> list[str]:
        """The runs that have a log, by name."""
        return sorted(p.name[: -len(SUFFIX)] for p in self.directory.glob(f"*{SUFFIX}"))

    def replay(self, run: str) -> Iterator[protocol.Frame]:
        """Yield the run's recorded frames in order (and start tracking which are live)."""
        path = self.directory / f"{run}{SUFFIX}"
        live = _Liveness()
        offset = 0
        for data in read_records(path):
            length = _RECORD.size + len(data)
            try:
                frame = protocol.decode(data, _TRUSTED)
            except ProtocolError as exc:  # written by another streamvis version, say
                log.warning("skipping an unreadable record of run %r: %s", run, exc)
            else:
                live.add(frame, offset, length)
                yield frame
            offset += length
        self.open(run).live = live

    def open(self, run: str) -> RunLog:
        """The log of ``run``, created if new."""
        runlog = self._logs.get(run)
        if runlog is None:
            runlog = self._logs[run] = RunLog(self.directory / f"{run}{SUFFIX}")
        return runlog

    def delete(self, run: str) -> None:
        """Delete the run's log."""
        runlog = self._logs.pop(run, None)
        if runlog is not None:
            runlog.close()
        (self.directory / f"{run}{SUFFIX}").unlink(missing_ok=True)

    def close(self) -> None:
        """Close every open log."""
        for runlog in self._logs.values():
            runlog.close()
        self._logs.clear()


class Writer:
    """Runs log writes on a thread of its own, in the order submitted, so the event loop
    never waits for the disk; the loop it is created on hears when they are done, and what
    failed. Checksums and writes of large buffers release the GIL.

    Each job has a key (a run's name, or a request's own token): a failure is reported only
    to those who wait on its key, never to a bystander.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._jobs: deque[tuple[Callable[[], None], Hashable]] = deque()
        self._ready = threading.Condition()
        self._closing = False
        self._submitted = self._done = 0  # jobs queued, and jobs the loop has heard are done
        self._failures: dict[Hashable, list[str]] = {}  # by key, not yet reported
        self._waiting: deque[tuple[int, Hashable, asyncio.Future[list[str]]]] = deque()
        self._thread = threading.Thread(target=self._main, name="streamvis-log", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Whether jobs are queued or running (as far as the loop has heard)."""
        return self._done < self._submitted

    def submit(self, job: Callable[[], None], key: Hashable) -> None:
        """Run ``job`` on the writer's thread, after every job submitted before it."""
        with self._ready:
            self._jobs.append((job, key))
            self._submitted += 1
            self._ready.notify()

    def written(self, key: Hashable) -> asyncio.Future[list[str]] | None:
        """A future done once every job so far has run, with the failures of ``key``'s jobs
        not yet reported; None if they have all run and none of those failed."""
        if not self.busy and key not in self._failures:
            return None
        future = self._loop.create_future()
        self._waiting.append((self._submitted, key, future))
        self._on_written(self._done, [])
        return future

    def close(self) -> None:
        """Run every queued job, then stop the thread."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join()
        self._on_written(self._submitted, [])

    def _main(self) -> None:  # the writer's thread
        done = 0
        while True:
            with self._ready:
                while not self._jobs and not self._closing:
                    self._ready.wait()
                jobs, self._jobs = self._jobs, deque()
            if not jobs:
                return
            failures = []
            for job, key in jobs:
                try:
                    job()
                except Exception as exc:
                    log.exception("writing a run log failed")
                    failures.append((key, repr(exc)))
            done += len(jobs)
            try:
                self._loop.call_soon_threadsafe(self._on_written, done, failures)
            except RuntimeError:  # the loop has closed: nobody waits any more
                log.warning("the event loop closed before %d log writes were reported", done)

    def _on_written(self, done: int, failures: list[tuple[Hashable, str]]) -> None:
        # on the loop's thread
        self._done = max(self._done, done)
        for key, failure in failures:
            self._failures.setdefault(key, []).append(failure)
        while self._waiting and self._waiting[0][0] <= self._done:
            _, key, future = self._waiting.popleft()
            if not future.done():
                future.set_result(self._failures.pop(key, []))
