"""Every run the server holds: its state, its log (if persistent), and the pages watching it.

Frames apply on the event loop; logs are written inline until :meth:`Hub.write_behind`, then
by a writer thread, and :meth:`Hub.written` says when what a run was sent is on disk, with
what failed for that run alone.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Hashable
from typing import Protocol

from . import protocol
from .errors import StreamvisError
from .plots.figures import check_fig_kwargs
from .state import RunState
from .store import Store, Writer

__all__ = ["Hub", "View"]

log = logging.getLogger("streamvis.server")

_INLINE_WRITE = 2**16  # frames smaller than this are logged on the loop when the writer is idle


class View(Protocol):
    """A page following one run."""

    run: str

    def notify(self, names: set[str]) -> None: ...


class Hub:
    """All runs' state, their logs (if persistent), and the pages watching them."""

    def __init__(self, store: Store | None = None) -> None:
        self.runs: dict[str, RunState] = {}
        self.store = store
        self._views: dict[str, set[View]] = {}
        self._writer: Writer | None = None

    def write_behind(self) -> None:
        """Write logs on a thread of their own from now on (call on the serving loop)."""
        if self.store is not None and self._writer is None:
            self._writer = Writer()

    def written(self, key: Hashable) -> asyncio.Future[list[str]] | None:
        """A future done once every log write so far is on disk, with what failed of
        ``key``'s (a run's name); None if they already are and none failed."""
        return self._writer.written(key) if self._writer is not None else None

    def _log(self, job: Callable[[Store], None], key: Hashable) -> None:
        """Run ``job`` on the store, on the writer's thread once there is one (in order)."""
        if self.store is None:
            return
        if self._writer is None:
            job(self.store)
        else:
            self._writer.submit(functools.partial(job, self.store), key)

    def close(self) -> None:
        """Finish writing the logs and close them."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.store is not None:
            self.store.close()

    def load(self) -> None:
        """Replay every run's log into its state."""
        if self.store is None:
            return
        for run in self.store.runs():
            state = self.runs[run] = RunState(run)
            count = 0
            for frame in self.store.replay(run):
                try:
                    state.apply(frame, replay=True)
                except StreamvisError as exc:
                    log.warning("replaying run %r: skipped frame %d: %s", run, frame.seq, exc)
                count += 1
            log.info("replayed run %r: %d frames, %d plots", run, count, len(state.plots))

    def state(self, run: str) -> RunState:
        """The state of ``run``, created empty if new."""
        state = self.runs.get(run)
        if state is None:
            state = self.runs[run] = RunState(run)
            log.info("new run %r", run)
        return state

    def apply(self, frame: protocol.Frame, data: bytes | memoryview) -> None:
        """Apply, log and show a frame (``data``: its bytes); raise StreamvisError if refused."""
        state = self.state(frame.run)
        changed = state.apply(frame, check_fig_kwargs)
        if not changed:
            return
        if self.store is not None:
            writer = self._writer
            if writer is not None and (writer.busy or len(data) >= _INLINE_WRITE):
                job = functools.partial(_write, frame, data, dict(state.last_seq))
                self._log(job, frame.run)
            elif _append(frame, data, self.store):  # inline: cheaper than a handoff
                self._log(functools.partial(_compact, frame.run, dict(state.last_seq)), frame.run)
        self._notify(frame.run, changed)

    async def delete(self, run: str) -> bool:
        """Forget a run and delete its log; False if there was no such run.

        Raises StreamvisError if the log could not be deleted (that failure is this call's:
        the run's clients never hear of it).
        """
        existed = self.runs.pop(run, None) is not None
        if self.store is not None:
            existed = existed or run in self.store.runs()
            request = object()
            self._log(lambda store: store.delete(run), request)
            if (deleting := self.written(request)) is not None and (failed := await deleting):
                raise StreamvisError(f"could not delete the log of run {run!r}: {failed[0]}")
        self._notify(run, {""})
        return existed

    def _notify(self, run: str, changed: set[str]) -> None:
        for view in self._views.get(run, ()):
            view.notify(changed)

    def attach(self, view: View) -> None:
        """Send ``view`` its run's changes from now on."""
        self._views.setdefault(view.run, set()).add(view)

    def detach(self, view: View) -> None:
        """Stop updating ``view`` (its page closed)."""
        self._views.get(view.run, set()).discard(view)

    def run_names(self) -> list[str]:
        """Every run the server holds, sorted."""
        return sorted(self.runs)


def _write(
    frame: protocol.Frame, data: bytes | memoryview, last_seq: dict[str, int], store: Store
) -> None:
    """Log an applied frame, and compact the log if it is due."""
    if _append(frame, data, store):
        _compact(frame.run, last_seq, store)


def _append(frame: protocol.Frame, data: bytes | memoryview, store: Store) -> bool:
    """Log an applied frame; return whether the log is due for compaction."""
    runlog = store.open(frame.run)
    runlog.append(frame, data)
    return frame.op == "clear" or runlog.needs_compaction()


def _compact(run: str, last_seq: dict[str, int], store: Store) -> None:
    """Rewrite a run's log with only its live records (replaced data outweighs them)."""
    store.open(run).compact(last_seq, run)
