"""A thread of its own for the stores' writes, so the event loop never waits for the disk.

Jobs run in the order submitted; each tells the loop it was created on how it ended, through
its ``done`` callback, called there. Appends that queue up for one key are written together
(:meth:`Writer.append`): one transaction for many messages costs little more than for one.
A job that fails makes the later jobs of its key (a run) fail too, unrun, until
:meth:`Writer.resume` for that key is reached: a run's frames are stored in the order they
came or not at all, so nothing after a lost write is acknowledged."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Done", "Writer"]

log = logging.getLogger("streamvis.store")

Done = Callable[[Exception | None], None]  # told how a job ended, on the loop's thread


class _Skipped(Exception):
    """A job not run because an earlier write of its key failed."""


@dataclass(eq=False)
class _Job:
    run: Callable[[], None] | None  # None: resume the key
    key: Hashable
    done: Done | None
    write: Callable[[Sequence[Any]], None] | None = None  # an append, with its items
    items: Sequence[Any] = ()


class Writer:
    """Runs jobs on a thread of its own and reports each to the loop it was created on."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._jobs: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._closing = False
        self._submitted = self._done = 0  # jobs queued, and jobs the loop has heard are done
        self._failed: dict[Hashable, Exception] = {}  # keys failing until resumed (thread)
        self._thread = threading.Thread(target=self._main, name="streamvis-log", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Whether jobs are queued or running (as far as the loop has heard)."""
        return self._done < self._submitted

    def submit(self, job: Callable[[], None], key: Hashable, done: Done | None = None) -> None:
        """Run ``job`` on the writer's thread after every job before it; then call ``done``
        on the loop with None, or with the exception that stopped it."""
        self._queue(_Job(job, key, done))

    def append(
        self,
        write: Callable[[Sequence[Any]], None],
        items: Sequence[Any],
        key: Hashable,
        done: Done | None = None,
    ) -> None:
        """Like ``submit(lambda: write(items))``; but the items of appends queued one after
        another with the same ``write`` and key go to one call of it (all fail together)."""
        self._queue(_Job(None, key, done, write, items))

    def resume(self, key: Hashable) -> None:
        """Let ``key``'s jobs submitted from now on run again after a failure."""
        self._queue(_Job(None, key, None))

    def _queue(self, item: _Job) -> None:
        with self._ready:
            self._jobs.append(item)
            self._submitted += 1
            self._ready.notify()

    def close(self) -> None:
        """Run every queued job, then stop the thread."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join()
        self._done = self._submitted

    def _main(self) -> None:  # the writer's thread
        while True:
            with self._ready:
                while not self._jobs and not self._closing:
                    self._ready.wait()
                jobs, self._jobs = self._jobs, deque()
            if not jobs:
                return
            results: list[tuple[Done | None, Exception | None]] = []
            while jobs:
                group = [jobs.popleft()]
                while group[0].write is not None and jobs and _joins(group[0], jobs[0]):
                    group.append(jobs.popleft())
                error = self._run(group)
                results.extend((job.done, error) for job in group)
            try:
                self._loop.call_soon_threadsafe(self._report, results)
            except RuntimeError:  # the loop has closed: nobody waits any more
                log.warning("the event loop closed before %d writes were reported", len(jobs))

    def _run(self, group: list[_Job]) -> Exception | None:
        first, key = group[0], group[0].key
        if first.run is None and first.write is None:
            self._failed.pop(key, None)
            return None
        if key in self._failed:
            return _Skipped(str(self._failed[key]))  # the cause, not a new one
        try:
            if first.write is not None:
                first.write([item for job in group for item in job.items])
            elif first.run is not None:
                first.run()
        except Exception as exc:
            log.warning("a write failed: %s", exc)
            self._failed[key] = exc
            return exc
        return None

    def _report(self, results: list[tuple[Done | None, Exception | None]]) -> None:
        # on the loop's thread
        self._done += len(results)
        for done, error in results:
            if done is not None:
                try:
                    done(error)
                except Exception:  # one caller's bug must not lose the others' results
                    log.exception("reporting a write failed")


def _joins(job: _Job, after: _Job) -> bool:
    """Whether ``after`` may be written in one call with ``job``."""
    return after.write == job.write and after.key == job.key
