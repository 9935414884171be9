"""Every run the server holds: its state, its store (if persistent), and the pages watching.

A message's frames are admitted (checked) at once, stored, and only then applied and shown
(:meth:`Hub.store_and_apply`): what a page shows and what the server acknowledges is what is
on disk. The writer thread stores them, so the loop never waits for the disk, and writes the
messages that queue up meanwhile in one transaction.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from ._chunking import Chunking
from ._chunks import Chunks
from ._clock import ROWS, StepClock
from ._errors import StoreError, StreamvisError, UnknownPlot
from ._plots.raster import Viewport
from ._plotstate import MARKS
from ._runstore import RunStore
from ._state import Admitted, RunState
from ._store import Store
from ._writer import Done, Writer

__all__ = ["Hub", "View"]

log = logging.getLogger("streamvis.server")


class View(Protocol):
    """A page following one or more runs."""

    @property
    def runs(self) -> tuple[str, ...]: ...

    def changed(self, run: str, names: set[str]) -> None: ...


class Hub:
    """All runs' state, their stores (if persistent), and the pages watching them."""

    def __init__(self, store: Store | None = None) -> None:
        self.runs: dict[str, RunState] = {}
        self.store = store
        self._views: dict[str, set[View]] = {}
        self._writer: Writer | None = None
        self.loaded: asyncio.Future[None] | None = None  # done once the stored runs are read
        self._appenders: dict[str, Callable[[Sequence[Any]], None]] = {}
        self._unread: set[str] = set()  # stored runs that could not be read (locked, say)
        self._chunking = (
            Chunking(store, self._store_cache, self.runs.get, lambda: self._writer is not None)
            if store is not None
            else None
        )

    def write_behind(self) -> None:
        """Store on a thread of its own from now on (call on the serving loop)."""
        if self.store is not None and self._writer is None:
            self._writer = Writer()

    def close(self) -> None:
        """Finish storing and close the stores."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.store is not None:
            self.store.close()

    def load(self) -> None:
        """Read what every stored run shows now into its state."""
        for run, state in self._read():
            self.runs[run] = state

    def begin_loading(self) -> None:
        """Say that the stored runs are about to be read (before the ports open)."""
        self.loaded = asyncio.get_running_loop().create_future()

    async def load_behind(self) -> None:
        """Read the stored runs on a thread, each shown once read; ingest and deletes wait
        meanwhile (:attr:`loaded`), pages say they are loading. The loop goes on serving."""
        if self.loaded is None or self.loaded.done():
            self.begin_loading()
        loaded = self.loaded
        assert loaded is not None
        loop = asyncio.get_running_loop()

        def read() -> None:
            for run, state in self._read():
                loop.call_soon_threadsafe(self._install, run, state)

        try:
            await asyncio.to_thread(read)
        except Exception:  # a bug of ours: the server goes on with what was read
            log.exception("reading the stored runs failed")
        finally:
            loaded.set_result(None)
            for views in list(self._views.values()):  # pages still waiting may now say why
                for view in list(views):
                    view.changed(view.runs[0], {""})

    def _install(self, run: str, state: RunState) -> None:
        self.runs[run] = state
        self._notify(run, {""})

    def _read(self) -> Iterator[tuple[str, RunState]]:
        """Each stored run's state, as it shows now (runs that cannot be read are skipped,
        and tried again when a client sends to them)."""
        if self.store is None:
            return
        for run in self.store.runs():
            state = self._read_run(run)
            if state is not None:
                yield run, state

    def _read_run(self, run: str) -> RunState | None:
        """The stored state of ``run`` (None if it cannot be read now)."""
        assert self.store is not None
        try:
            stored = self.store.open(run)
            try:
                state, count = _replayed(stored, run, chunks=True)
            except StoreError as exc:  # its rows are in its frames too
                log.error("run %r: %s; reading the rows from its frames instead", run, exc)
                state, count = _replayed(stored, run, chunks=False)
        except Exception as exc:  # one unreadable run stops no other
            log.error("run %r cannot be read: %s", run, exc)
            self._unread.add(run)
            return None
        self._unread.discard(run)
        log.info("loaded run %r: %d frames, %d plots", run, count, len(state.plots))
        return state

    def state(self, run: str) -> RunState:
        """The state of ``run``, created empty if new. A stored run that could not be read
        at start-up is read now (its clients' resent frames must be known as such)."""
        state = self.runs.get(run)
        if state is None and run in self._unread:
            state = self._read_run(run)
            if state is not None:
                self.runs[run] = state
        if state is None:
            state = self.runs[run] = RunState(run)
            log.info("new run %r", run)
        return state

    def store_and_apply(
        self,
        run: str,
        batch: Sequence[tuple[Admitted, memoryview]],
        done: Callable[[StreamvisError | None], None],
    ) -> None:
        """Store admitted frames of ``run`` in one transaction, then apply and show them and
        call ``done(None)``; if storing fails, take back their admission and call ``done``
        with the error (nothing of them is applied)."""

        epoch = self.state(run).epoch

        def finish(error: Exception | None) -> None:
            state = self.state(run)
            if error is not None:
                if epoch == state.epoch:  # the first to fail: all in flight fail with it
                    state.rollback()
                    if self._writer is not None:
                        self._writer.resume(run)  # what the clients resend is stored again
                done(error if isinstance(error, StreamvisError) else StreamvisError(str(error)))
                return
            changed: set[str] = set()
            try:
                for admitted, _ in batch:
                    changed |= state.commit(admitted)
                if self._chunking is not None:
                    self._chunking.store_rows(run, state, changed)
            except Exception:  # a bug of ours: what is stored stands, the replies still go
                log.exception("applying stored frames of run %r failed", run)
            if changed:
                self._notify(run, changed)
            done(None)

        store = self.store
        if store is None:
            finish(None)
            return
        frames = [(admitted.frame, data) for admitted, data in batch]
        ids = [(admitted.id, admitted.rows) for admitted, _ in batch]  # where, rows then held
        writer = self._writer
        if writer is None:
            try:
                _append(store, run, list(zip(frames, ids, strict=True)))
            except Exception as exc:
                finish(exc)
            else:
                finish(None)
        else:  # off the loop, and with the messages queued behind it, in one transaction
            writer.append(self._appender(run), list(zip(frames, ids, strict=True)), run, finish)

    def keep_image(self, run: str, name: str) -> None:
        """Store the last image drawn of a big plot (it took long): a restarted server shows
        it at once, while it draws the image the page needs."""
        state = self.runs.get(run)
        plot = state.plots.get(name) if state is not None else None
        if plot is None or plot.last_image is None or self.store is None:
            return
        rows, view, image = plot.last_image
        store, since = self.store, plot.start_id
        frame = (view.x0, view.x1, view.y0, view.y1, view.width, view.height)
        job = functools.partial(store.open(run).put_image, name, since, rows, frame, image)
        self._store_cache(run, job, lambda: None)

    def _appender(self, run: str) -> Callable[[Sequence[Any]], None]:
        """What appends ``run``'s frames, opening its store on the writer's thread; the same
        object each time, so that queued appends of the run are written together."""
        appender = self._appenders.get(run)
        if appender is None:
            store = self.store
            assert store is not None
            appender = self._appenders[run] = functools.partial(_append, store, run)
        return appender

    async def delete(self, run: str) -> bool:
        """Forget a run and delete its store; False if there was no such run.

        Raises StreamvisError if its files could not be deleted (that failure is this
        call's: the run's clients never hear of it).
        """
        if self.loaded is not None:
            await asyncio.shield(self.loaded)  # the loader may be reading this run's store
        existed = self.runs.pop(run, None) is not None
        if self.store is not None:
            store = self.store
            existed = existed or run in store.runs()
            error = await self._on_writer(lambda: store.delete(run), ("delete", run))
            if error is not None:
                raise StreamvisError(f"could not delete the files of run {run!r}: {error}")
        self._notify(run, {""})
        return existed

    async def _on_writer(self, job: Callable[[], None], key: Hashable) -> Exception | None:
        """Run ``job`` after every write before it; the exception it raised, if any."""
        future: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self._submit(job, key, future.set_result)
        return await future

    def _submit(self, job: Callable[[], None], key: Hashable, done: Done) -> None:
        """Run ``job`` on the writer's thread after every write before it (at once, without
        one), then ``done`` on the loop with the exception it raised, or None."""
        if self._writer is not None:
            self._writer.submit(job, key, done)
            return
        try:
            job()
        except Exception as exc:
            done(exc)
        else:
            done(None)

    def _store_cache(
        self,
        run: str,
        job: Callable[[], None],
        done: Callable[[], None],
        failed: Callable[[], None] = lambda: None,
    ) -> None:
        """Store what only saves work later (chunks, images), then ``done`` (or ``failed``)
        on the loop. A failure is a warning; the run's next such write runs again."""

        def stored(error: Exception | None) -> None:
            if error is None:
                done()
                return
            failed()
            log.warning("run %r: %s (its frames are stored: nothing is lost)", run, error)
            if self._chunking is not None:
                self._chunking.pause(run)
            if self._writer is not None:
                self._writer.resume(("rows", run))

        self._submit(job, ("rows", run), stored)

    def _notify(self, run: str, changed: set[str]) -> None:
        for view in list(self._views.get(run, ())):
            view.changed(run, changed)

    def attach(self, view: View) -> None:
        """Send ``view`` its runs' changes from now on."""
        for run in view.runs:
            self._views.setdefault(run, set()).add(view)

    def detach(self, view: View) -> None:
        """Stop updating ``view`` (its page closed)."""
        for run in view.runs:
            self._views.get(run, set()).discard(view)

    async def rows(self, run: str, plot: str, x0: float, x1: float) -> dict[str, np.ndarray]:
        """The rows of ``run``'s ``plot`` whose x is within ``[x0, x1]``, at full resolution
        (read off the loop where they left memory). Raises UnknownPlot if there is no such
        plot, StoreError if its stored rows cannot be read."""
        state = self.runs.get(run)
        found = state.plots.get(plot) if state is not None else None
        if found is None:
            where = f"run {run!r} has plots {sorted(state.plots)}" if state else f"no run {run!r}"
            raise UnknownPlot(f"no plot {plot!r}: {where}")
        return await asyncio.to_thread(found.rows_reader(x0, x1))

    def run_names(self) -> list[str]:
        """Every run the server holds, sorted."""
        return sorted(self.runs)


def _replayed(stored: RunStore, run: str, chunks: bool) -> tuple[RunState, int]:
    """The state of a stored run, as it shows now, and how many frames that took (the rows
    of long plots read from their chunks, if ``chunks``). Raises StoreError if a chunk
    cannot be read."""
    state, count = RunState(run), 0
    for item in stored.current(chunks):
        if isinstance(item, Chunks):  # the rows of a plot just placed, in chunks
            plot = state.plots.get(item.plot)
            if plot is not None:
                plot.restore(item.chunks)
            continue
        try:
            state.apply(item.frame, replay=True, frame_id=item.id)
        except StreamvisError as exc:
            log.warning("run %r: skipped stored frame %d: %s", run, item.id, exc)
        count += 1
    for plot in state.plots.values():
        kept = stored.image(plot.name, plot.start_id) if plot.rasterized else None
        if kept is not None and kept[0] <= len(plot.data):
            x0, x1, y0, y1, width, height = kept[1]
            plot.last_image = (kept[0], Viewport(x0, x1, y0, y1, int(width), int(height)), kept[2])
    state.next_id = max(state.next_id, stored.last_id() + 1)
    state.take_steps(stored.step_range(state.plots))
    state.take_times(stored.time_range())
    state.clock = StepClock()  # the replay took its frames out of order: from samples
    state.clock.extend(stored.step_times(state.plots, ROWS))
    state.merge_seqs(stored.last_seqs())
    state.settle()  # the rows of plots restored from their chunks
    for plot in state.plots.values():
        if plot.spec.kind == "tandem_lines":  # its NaN and inf values, from all its frames
            total, found = stored.nonfinite(plot.name, plot.start_id, MARKS)
            plot.take_bad(found, total)
    return state, count


def _append(store: Store, run: str, items: Sequence[Any]) -> None:
    frames, marks = [frame for frame, _ in items], [mark for _, mark in items]
    store.open(run).append(frames, [i for i, _ in marks], [rows for _, rows in marks])
