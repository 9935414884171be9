"""The client's send queue, with no threads, sockets or clock: the sender's state machine.

It numbers and encodes the calls it is given, folds a plot's queued replaces (latest wins),
holds a plot's replaces to one per ``replace_interval``, keeps every sent frame until it is
acknowledged, gives them back to be resent after a reconnect, and acts on the server's
answers: a frame whose plot lost its place (or that could not be stored) is sent again with
everything after it, after the client's layout (or a pause). Time comes in as ``now``;
what to send, and what to tell the caller, go out as return values. The transport
(:mod:`_transport`) holds a lock around every call but :meth:`SendQueue.encode`, which
touches only the sender's own state, and does the I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from . import _protocol as protocol
from ._errors import ServerError
from ._pool import HEAD_ROOM, BufferPool

__all__ = ["ITEM_OVERHEAD", "Answer", "Outgoing", "SendQueue", "Sent"]

ITEM_OVERHEAD = 256  # what a frame's header adds to its arrays, roughly, for buffer accounting
BATCH_FRAMES = 64
BATCH_BYTES = 8 * 2**20
MAX_RESTORES = 3  # times a frame is resent after its plot lost its place, at most
RETRY = (1.0, 30.0)  # seconds before restored frames go again, while restores recur


class Done(Protocol):
    """Whoever waits for an item to be acknowledged (a ``threading.Event``)."""

    def set(self) -> None: ...


@dataclass(eq=False)
class Outgoing:
    """A call waiting to be sent; replace calls may be overwritten by a later one."""

    op: protocol.Op
    name: str | None = None
    opts: Mapping[str, Any] = field(default_factory=dict)
    arrays: tuple[np.ndarray, ...] = ()
    replace: bool = False
    done: Done | None = None  # set once acknowledged (sync items)
    buffer: np.ndarray | None = None  # pooled memory holding the arrays, after HEAD_ROOM
    nbytes: int = 0  # for buffer accounting: the arrays' bytes plus ITEM_OVERHEAD
    restore: bool = False  # resent after the server lost its plot's place
    restores: int = 0  # how often the server refused it for its place
    made: float | None = None  # when the call was made (time.time()), and its step: sent as
    step: int | None = None  # opts "time" and "step", added by the sender, not the call

    def __post_init__(self) -> None:
        if not self.nbytes:  # callers that know it pass it (with the overhead)
            self.nbytes = sum(a.nbytes for a in self.arrays) + ITEM_OVERHEAD


@dataclass(eq=False)
class Sent:
    """A frame sent (or about to be), kept until acknowledged."""

    seq: int
    data: bytes | memoryview
    done: Done | None
    buffer: np.ndarray | None  # what ``data`` views, back to the pool once acknowledged
    restores: int = 0


@dataclass
class Answer:
    """What the server's reply means for the caller: errors to report (each with what makes
    it the same as others), waiters to release, and whether the sender should wake."""

    errors: list[tuple[ServerError, str | None]] = field(default_factory=list)
    done: list[Done] = field(default_factory=list)
    restored: int = 0  # frames queued again after the server lost their plot's place
    wake: bool = False  # frames were queued again: the sender has work, or a pause to keep


class SendQueue:
    """The state of one client's sending: what is queued, held, sent and unacknowledged."""

    def __init__(
        self, run: str, cid: str, pool: BufferPool, *, replace_interval: float, max_bytes: int
    ) -> None:
        self.run, self.cid, self.pool = run, cid, pool
        self.replace_interval, self.max_bytes = replace_interval, max_bytes
        self.frame_limit = 2**62  # the server's, once it says it
        self.buffered = 0  # bytes of every item and frame held, for back-pressure
        self.idle = False  # the sender found nothing to send: wake it for the next item
        self._seq = 0
        self._pending: deque[Outgoing] = deque()
        self._last_replace: dict[str, Outgoing] = {}  # queued replaces, which later ones fold
        self._held: dict[str, Outgoing] = {}  # replaces waiting out replace_interval
        self._replaced_at: dict[str, float] = {}  # when each plot's last replace was sent
        self._unacked: deque[Sent] = deque()
        self._restored: deque[Outgoing] = deque()  # to send first, before anything queued
        self.layout: Mapping[str, Any] | None = None  # this client's, as last submitted
        self._figs: dict[str, Any] = {}  # each plot's fig_kwargs, as the server took them
        self._figs_sent: deque[tuple[int, str, Any]] = deque()  # (seq, plot, fig) unanswered
        self._fig_due: set[str] = set()  # plots whose next frame carries them again
        self._restore_at = 0.0  # when the restored frames may go
        self._retry = 0.0  # the pause before the next restore (grows while they recur)
        self._restored_at = -RETRY[1]

    @property
    def queued(self) -> list[Outgoing]:
        """The calls queued and not yet sent, in order (for tests and diagnostics)."""
        return list(self._pending)

    @property
    def numbered(self) -> int:
        """How many frames have been numbered (sent at least once) so far."""
        return self._seq

    def keep_layout(self, item: Outgoing) -> None:
        """Note the layout a layout or clear call sets: restores send it, even if the call
        itself is dropped."""
        if item.op in ("layout", "clear"):
            self.layout = item.opts if item.op == "layout" else None

    @property
    def empty(self) -> bool:
        """Whether nothing waits to be sent or acknowledged."""
        return not (self._pending or self._held or self._unacked or self._restored)

    # -- calls ---------------------------------------------------------------------------

    def fold(self, item: Outgoing) -> bool:
        """Fold a replace into the same plot's queued one (latest wins); True if it was."""
        if item.op != "plot":
            self._last_replace.clear()  # nothing folds across a layout, clear or sync
            return False
        queued = self._last_replace.get(item.name) if item.replace and item.name else None
        if queued is None:
            return False
        self.buffered += item.nbytes - queued.nbytes
        folded = int(queued.opts.get("folded", 0)) + 1  # replaces it stands for, besides itself
        item.opts = {**item.opts, "folded": folded}
        if "fig" in queued.opts and "fig" not in item.opts:
            item.opts = {**item.opts, "fig": queued.opts["fig"]}
        if queued.buffer is not None:
            self.pool.give(queued.buffer)
        queued.opts, queued.arrays, queued.nbytes = item.opts, item.arrays, item.nbytes
        queued.made, queued.step = item.made, item.step
        queued.buffer = item.buffer
        return True

    def full(self, item: Outgoing) -> bool:
        """Whether ``item`` must wait for acknowledgements to make room (back-pressure)."""
        return (
            item.op != "sync"
            and self.buffered > 0
            and self.buffered + item.nbytes > (self.max_bytes)
        )

    def push(self, item: Outgoing) -> bool:
        """Queue ``item`` (not folded); True if the sender is idle and must be woken."""
        self._pending.append(item)
        self.buffered += item.nbytes
        if item.name is not None:
            if item.replace:
                self._last_replace[item.name] = item
            else:
                self._last_replace.pop(item.name, None)
        idle, self.idle = self.idle, False
        return idle

    def drop_all(self) -> list[Done]:
        """Give up everything held (the server refuses this client); the waiters to release."""
        items = [*self._pending, *self._held.values(), *self._restored]
        done = [i.done for i in items] + [s.done for s in self._unacked]
        for buffer in [i.buffer for i in items] + [s.buffer for s in self._unacked]:
            if buffer is not None:
                self.pool.give(buffer)
        for queue in (self._pending, self._held, self._restored, self._unacked):
            queue.clear()
        self._last_replace.clear()
        self.buffered = 0
        return [d for d in done if d is not None]

    def relayout(self) -> None:
        """Send this client's layout first, and each plot's fig_kwargs with its next frame
        (the server may have missed them while it refused this client)."""
        if self.layout is not None:
            self._restored.appendleft(Outgoing("layout", opts=self.layout))
            self.buffered += ITEM_OVERHEAD
        self._fig_due = set(self._figs)

    # -- sending ---------------------------------------------------------------------------

    def resend(self) -> list[Sent]:
        """Every frame sent and not acknowledged, to send again on a new connection."""
        return list(self._unacked)

    def take(self, now: float) -> tuple[list[Outgoing], float | None]:
        """The next batch to send, and the seconds until something held is due (if any).

        A plot's replace sent less than ``replace_interval`` ago is held back, and later
        replaces of that plot overwrite it; it goes once due, or before anything that must
        follow it: a call to the same plot, a layout, clear or sync (so flush sends it).
        Restored frames go before anything else, once their pause is over.
        """
        batch: list[Outgoing] = []
        if self._restored and now < self._restore_at:  # nothing may overtake them
            return batch, self._restore_at - now
        size = 0
        while self._restored:
            size += self._release(self._restored.popleft(), batch, now)
        for name in [n for n in self._held if self._replace_due(n, now) <= 0]:
            size += self._release(self._held.pop(name), batch, now)
        while self._pending and len(batch) < BATCH_FRAMES and size < BATCH_BYTES:
            item = self._pending.popleft()
            if item.op != "plot":
                for held in self._held.values():
                    size += self._release(held, batch, now)
                self._held.clear()
            elif item.name in self._held:
                size += self._release(self._held.pop(item.name), batch, now)
            elif item.replace and item.name is not None and self._replace_due(item.name, now) > 0:
                self._held[item.name] = item
                continue
            size += self._release(item, batch, now)
        if not batch:
            self.idle = True
        due = min((self._replace_due(n, now) for n in self._held), default=None)
        return batch, due

    def _replace_due(self, name: str, now: float) -> float:
        return self._replaced_at.get(name, -self.replace_interval) + self.replace_interval - now

    def _release(self, item: Outgoing, batch: list[Outgoing], now: float) -> int:
        """Put ``item`` in ``batch`` (returning its size): later replaces of its plot no longer
        fold into it."""
        if item.name is not None:
            if self._last_replace.get(item.name) is item:
                del self._last_replace[item.name]
            if item.replace:
                self._replaced_at[item.name] = now
        batch.append(item)
        return item.nbytes

    def encode(self, batch: list[Outgoing]) -> tuple[list[Sent], list[ServerError]]:
        """Number and encode ``batch`` (the last frame asks for an ack); with the errors of
        frames that could not be (sent as syncs). Only the sender calls it, so it needs no
        lock: callers go on queueing while it copies; :meth:`keep` then holds the frames."""
        errors: list[ServerError] = []
        frames = [self._encode(item, i == len(batch) - 1, errors) for i, item in enumerate(batch)]
        return frames, errors

    def keep(self, frames: list[Sent], batch: list[Outgoing]) -> None:
        """Keep ``batch``'s encoded ``frames`` until acknowledged."""
        self._unacked.extend(frames)
        self.buffered += sum(len(f.data) for f in frames) - sum(i.nbytes for i in batch)

    def _encode(self, item: Outgoing, ack: bool, errors: list[ServerError]) -> Sent:
        seq = self._seq
        self._seq += 1
        opts = self._remember(seq, item)
        frame = protocol.Frame(
            item.op, self.run, self.cid, seq, item.name, opts, item.arrays, ack, item.restore
        )
        try:
            data = _frame_bytes(frame, item.buffer)
        except Exception as exc:  # the caller checked its values; this is the last guard
            data = b""
            errors.append(
                ServerError(f"frame {seq} for plot {item.name!r} cannot be encoded: {exc}")
            )
        if len(data) > self.frame_limit:
            errors.append(
                ServerError(
                    f"frame {seq} for plot {item.name!r} has {len(data)} bytes, over the "
                    f"server's limit of {self.frame_limit}: send smaller arrays, "
                    "or raise the server's --max_frame_mb"
                )
            )
            data = b""
        if not data:  # keep the sequence whole: a sync in its place
            data = protocol.encode(replace(frame, op="sync", name=None, arrays=(), opts={}))
        if item.buffer is not None and not isinstance(data, memoryview):
            self.pool.give(item.buffer)  # sent as a copy: the buffer is free already
            return Sent(seq, data, item.done, None, item.restores)
        return Sent(seq, data, item.done, item.buffer, item.restores)

    def _remember(self, seq: int, item: Outgoing) -> Mapping[str, Any]:
        """Note the fig_kwargs ``item`` sends (to restore them once the server took them);
        return its options: fig_kwargs due again, its time and step, a line's NaN count."""
        name, opts = item.name, item.opts
        if item.op == "clear":
            self._figs.clear()
            self._figs_sent.clear()
        elif name is not None:
            if "fig" in opts:
                self._figs_sent.append((seq, name, opts["fig"]))
            elif name in self._fig_due and name in self._figs:
                opts = {**opts, "fig": self._figs[name]}
            self._fig_due.discard(name)
        if item.made is None:
            return opts
        if opts.get("kind") == "tandem_lines" and not (finite := np.isfinite(item.arrays[1])).all():
            opts = {**opts, "bad": int(finite.size - np.count_nonzero(finite))}
        return {**opts, "time": item.made} | ({} if item.step is None else {"step": item.step})

    # -- answers -------------------------------------------------------------------------

    def answer(self, reply: Mapping[str, Any], now: float) -> Answer:
        """Act on one reply of the server."""
        answer = Answer()
        seq, plot, err, code = (reply.get(k) for k in ("seq", "name", "err", "code"))
        if code in (protocol.UNPLACED, protocol.UNSTORED) and isinstance(seq, int):
            self._restore(seq, str(err), code == protocol.UNPLACED, now, answer)
        if err is not None and code is None:  # refused: a restore must not send them again
            self._figs_sent = deque(f for f in self._figs_sent if f[0] != seq)
        if code == protocol.UNSTORED:  # the same trouble for every frame: one report
            answer.errors.append((ServerError(f"the server reports: {err}"), protocol.UNSTORED))
        elif err is not None and code != protocol.UNPLACED:
            if seq is None:
                text = f"the server reports: {err}"
            else:
                where = f" (plot {plot!r})" if plot is not None else ""
                text = f"the server refused frame {seq}{where}: {err}"
            seq_n = seq if isinstance(seq, int) else None
            plot_s = plot if isinstance(plot, str) else None
            answer.errors.append((ServerError(text, seq=seq_n, plot=plot_s), str(err)))
        if isinstance(reply.get("ack"), int):
            answer.done += self._acknowledge(reply["ack"])
        return answer

    def _acknowledge(self, seq: int) -> list[Done]:
        while self._figs_sent and self._figs_sent[0][0] <= seq:
            _, name, fig = self._figs_sent.popleft()  # taken: what a restore sends again
            self._figs[name] = fig
        done = []
        while self._unacked and self._unacked[0].seq <= seq:
            sent = self._unacked.popleft()
            self.buffered -= len(sent.data)
            if sent.done is not None:
                done.append(sent.done)
            if sent.buffer is not None:
                self.pool.give(sent.buffer)
        return done

    def _restore(self, seq: int, reason: str, placed: bool, now: float, answer: Answer) -> None:
        """The server ignores this client's frames from ``seq`` on: it lost the place of that
        frame's plot (``placed``), or could not store it. Queue every frame from ``seq`` on
        to go first: after this client's layout, or after a pause."""
        if not any(sent.seq == seq for sent in self._unacked):
            return  # a stale answer: those frames went again already
        tail = [sent for sent in self._unacked if sent.seq >= seq]
        while self._unacked and self._unacked[-1].seq >= seq:
            self._unacked.pop()
        layout = self.layout if placed else None
        items = [Outgoing("layout" if layout else "sync", opts=layout or {}, restore=True)]
        for sent in tail:
            self.buffered -= len(sent.data)
            item = self._unsent(sent, refused=placed and sent.seq == seq)  # unstored: not
            if item.restores > MAX_RESTORES:  # its plot never finds a place
                answer.errors.append((ServerError(f"a frame was dropped: {reason}"), reason))
                if item.buffer is not None:
                    self.pool.give(item.buffer)
                if item.done is not None:
                    answer.done.append(item.done)
                continue
            items.append(item)
        self.buffered += sum(item.nbytes for item in items)
        self._restored.extendleft(reversed(items))
        self._fig_due = set(self._figs)
        self._pause(placed, now)
        answer.restored, answer.wake = (len(tail) if placed else 0), True

    def _pause(self, placed: bool, now: float) -> None:
        """When restored frames may go: a lost place is restored at once, unstored frames
        after a pause; either waits longer each time it recurs within ``RETRY[1]`` (two
        clients that lay a run out differently would otherwise rebuild its pages at every
        step)."""
        if now - self._restored_at > RETRY[1]:
            self._retry = 0.0
        delay = self._retry if placed else max(self._retry, RETRY[0])
        self._retry = min(max(delay * 2, RETRY[0]), RETRY[1])
        self._restore_at, self._restored_at = now + delay, now

    @staticmethod
    def _unsent(sent: Sent, refused: bool) -> Outgoing:
        """The item ``sent`` was made from, to send again (holding ``sent``'s buffer);
        ``refused`` counts one more refusal of it."""
        frame = protocol.decode(sent.data, protocol.TRUSTED_LIMITS)
        return Outgoing(
            frame.op,
            frame.name,
            frame.opts,
            frame.arrays,
            replace=frame.op == "plot" and not frame.opts.get("append"),
            done=sent.done,
            buffer=sent.buffer,
            restores=sent.restores + refused,
        )


def _frame_bytes(frame: protocol.Frame, buffer: np.ndarray | None) -> bytes | memoryview:
    """The frame's bytes: a view of its pooled buffer with the head written before the
    arrays, or (no buffer, or a head too long for the room) a joined copy."""
    head = protocol.encode_head(frame) if buffer is not None else b""
    if buffer is None or len(head) > HEAD_ROOM:
        return protocol.encode(frame)
    start = HEAD_ROOM - len(head)
    view = buffer.data
    view[start:HEAD_ROOM] = head
    return view[start : HEAD_ROOM + sum(protocol.padded(a.nbytes) for a in frame.arrays)]
