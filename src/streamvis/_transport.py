"""The client's background sender: one thread, its own event loop, one websocket.

Callers hand it ``Outgoing`` items; it numbers, encodes and sends them, keeps every sent
frame until the server acknowledges it, and resends the unacknowledged ones after a
reconnect. A caller never waits on the network, except when the buffer is full. Nothing
that goes wrong in the thread stops it: errors are kept (:mod:`_reports`) for the caller.

Two remote events change the course. A server that refuses the client itself (a wrong
token, a wrong port) makes it drop what it holds and what it is given, rather than fill its
buffer and then block the caller, until a connection succeeds. A server that lost the place
of a plot (its run deleted, cleared, or laid out anew by another client) gets this client's
layout again, then every frame from the refused one on, renumbered and marked ``restore``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import websockets
from websockets.asyncio.client import ClientConnection, connect

from . import protocol
from ._pool import HEAD_ROOM, JOIN_BELOW, BufferPool
from ._reports import Reports
from .errors import ServerError, StreamvisError
from .guard import hide_tokens

__all__ = ["ITEM_OVERHEAD", "Outgoing", "Transport", "live"]

log = logging.getLogger(__name__)
hide_tokens("websockets.client")

_BATCH_FRAMES = 64
_BATCH_BYTES = 8 * 2**20
_BACKOFF = (0.05, 2.0)
_JOIN_BYTES = 2**20  # small frames travel together in messages of up to this size
ITEM_OVERHEAD = 256  # what a frame's header adds to its arrays, roughly, for buffer accounting
_POOL_BYTES = 64 * 2**20  # free buffers kept for reuse, at most
_REFUSALS = (401, 403)  # handshake answers that retrying soon will not change (and a 404
# from a streamvis page port); any other answer may be a proxy's that passes
_REFUSED_RETRY = 2.0  # seconds between attempts while the server refuses this client
_MAX_RESTORES = 3  # times a frame is resent after its plot lost its place, at most
_RETRY = (1.0, 30.0)  # seconds before frames the server could not store are sent again
_TRUSTED = protocol.Limits(max_frame_bytes=2**62, max_header_bytes=2**30, max_arrays=2**16)

live: set[Transport] = set()  # every transport whose thread runs; flushed at exit


@dataclass(eq=False)
class Outgoing:
    """A call waiting to be sent; replace calls may be overwritten by a later one."""

    op: protocol.Op
    name: str | None = None
    opts: Mapping[str, Any] = field(default_factory=dict)
    arrays: tuple[np.ndarray, ...] = ()
    replace: bool = False
    done: threading.Event | None = None  # set once acknowledged (sync items)
    buffer: np.ndarray | None = None  # pooled memory holding the arrays, after HEAD_ROOM
    nbytes: int = 0  # for buffer accounting: the arrays' bytes plus ITEM_OVERHEAD
    restore: bool = False  # resent after the server lost its plot's place
    restores: int = 0  # how often it was

    def __post_init__(self) -> None:
        if not self.nbytes:  # callers that know it pass it (with the overhead)
            self.nbytes = sum(a.nbytes for a in self.arrays) + ITEM_OVERHEAD


@dataclass(eq=False)
class _Sent:
    seq: int
    data: bytes | memoryview
    done: threading.Event | None
    buffer: np.ndarray | None  # what ``data`` views, back to the pool once acknowledged
    restores: int = 0


class Transport:
    """Delivers Outgoing items to ``uri`` from a daemon thread, at least once, in order."""

    def __init__(
        self,
        uri: str,
        run: str,
        cid: str,
        *,
        max_buffer_bytes: int,
        max_frame_bytes: int,
        exit_timeout: float,
        replace_interval: float = 0.0,
        headers: Mapping[str, str] | None = None,
        strict: bool = False,
    ) -> None:
        self.uri, self.run, self.cid = uri, run, cid
        self.replace_interval = replace_interval
        self.max_buffer_bytes = max_buffer_bytes
        self.max_frame_bytes = max_frame_bytes
        self.frame_limit = max_frame_bytes  # and the server's limit, once it says it
        self.exit_timeout = exit_timeout
        self.headers = dict(headers or {})
        self.connected = threading.Event()
        self.reports = Reports(strict)
        self.refused: ServerError | None = None  # the server refuses this client itself
        self.dropped = 0  # calls dropped meanwhile
        self._waiters: set[threading.Event] = set()
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self.pool = BufferPool(min(_POOL_BYTES, max_buffer_bytes // 8))
        self._pending: deque[Outgoing] = deque()
        self._last_replace: dict[str, Outgoing] = {}  # queued replaces, which later ones overwrite
        self._held: dict[str, Outgoing] = {}  # replaces waiting out replace_interval
        self._replaced_at: dict[str, float] = {}  # when each plot's last replace was sent
        self._unacked: deque[_Sent] = deque()
        self._restored: deque[Outgoing] = deque()  # to resend first, after a lost layout
        self._layout: Mapping[str, Any] | None = None  # this client's, as last submitted
        self._figs: dict[str, Any] = {}  # each plot's fig_kwargs, as the server took them
        self._figs_sent: deque[tuple[int, str, Any]] = deque()  # (seq, plot, fig) unacknowledged
        self._fig_due: set[str] = set()  # plots whose next frame carries them again
        self._restore_at = 0.0  # when the restored frames may go
        self._retry = 0.0  # the pause before the next restore (grows while they repeat)
        self._restored_at = -_RETRY[1]
        self._buffered = 0
        self._seq = 0
        self._idle = False
        self._closing = False  # deliver everything, then stop
        self._stopping = False  # stop now
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        self._thread = threading.Thread(target=self._main, name="streamvis-sender", daemon=True)
        self._alive = True  # until the thread ends: cheaper to check than is_alive()
        live.add(self)
        self._thread.start()

    # -- caller side (any thread) --------------------------------------------------------

    def submit(self, item: Outgoing) -> None:
        """Queue ``item``; a replace supersedes an unsent replace of the same plot."""
        if not self._alive:
            raise StreamvisError(f"the sender to {self.uri} has stopped: create a new Client")
        if item.op in ("layout", "clear"):
            with self._lock:  # kept to restore, even while calls are dropped
                self._layout = item.opts if item.op == "layout" else None
        if self.refused is not None and item.op != "sync":
            self.dropped += 1  # kept, it would only fill the buffer until calls block
            if item.buffer is not None:
                self.pool.give(item.buffer)
            return
        if self._queue(item):
            self._loop.call_soon_threadsafe(self._wake.set)  # a syscall: not under the lock

    def _queue(self, item: Outgoing) -> bool:
        """Queue or coalesce ``item``; True if the sender is idle and must be woken."""
        with self._lock:
            if item.op != "plot":
                self._last_replace.clear()  # nothing coalesces across a layout, clear or sync
            elif item.replace and item.name is not None:
                queued = self._last_replace.get(item.name)
                if queued is not None:
                    self._buffered += item.nbytes - queued.nbytes
                    if "fig" in queued.opts and "fig" not in item.opts:
                        item.opts = {**item.opts, "fig": queued.opts["fig"]}
                    if queued.buffer is not None:
                        self.pool.give(queued.buffer)
                    queued.opts, queued.arrays, queued.nbytes = item.opts, item.arrays, item.nbytes
                    queued.buffer = item.buffer
                    return False
            if item.op != "sync" and self._buffered + item.nbytes > self.max_buffer_bytes:
                self._wait_for_space(item.nbytes)
            self._pending.append(item)
            self._buffered += item.nbytes
            if item.name is not None:
                if item.replace:
                    self._last_replace[item.name] = item
                else:
                    self._last_replace.pop(item.name, None)
            idle, self._idle = self._idle, False
            return idle

    def _wait_for_space(self, nbytes: int) -> None:
        if self._buffered == 0:
            return
        log.warning(
            "%d bytes are waiting for %s (limit max_buffer_bytes=%d); "
            "this call blocks until the server acknowledges some of them",
            self._buffered,
            self.uri,
            self.max_buffer_bytes,
        )
        while (
            self._buffered + nbytes > self.max_buffer_bytes
            and self._buffered
            and self.refused is None
            and self._thread.is_alive()
        ):
            self._space.wait(timeout=1.0)

    def sync(self, timeout: float | None) -> bool:
        """Wait until everything submitted so far is acknowledged; False on timeout, or at
        once while the server refuses this client."""
        if self.refused is not None:
            return False
        done = threading.Event()
        with self._lock:
            self._waiters.add(done)
        try:
            self.submit(Outgoing("sync", done=done))
            return done.wait(timeout) and self.refused is None
        finally:
            with self._lock:
                self._waiters.discard(done)

    def close(self, timeout: float | None) -> bool:
        """Deliver what is queued (waiting at most ``timeout``), then stop the thread."""
        delivered = self._thread.is_alive() and self.sync(timeout)
        self._stopping = True
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._wake.set)
            self._thread.join(timeout=5.0)
        if self._buffered > 0 and not delivered:
            log.warning(
                "closed with %d bytes that %s did not acknowledge", self._buffered, self.uri
            )
        return delivered

    def retire(self) -> None:
        """Stop once everything queued is delivered, without waiting (the client is gone)."""
        self._closing = True
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._wake.set)

    # -- sender thread -------------------------------------------------------------------

    def _done(self) -> bool:
        idle = not (self._pending or self._held or self._unacked or self._restored)
        return self._stopping or (self._closing and (idle or self.refused is not None))

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._run())
        except Exception:  # pragma: no cover - _run handles its errors; this is the last guard
            log.exception("the sender to %s failed", self.uri)
        finally:
            self._alive = False
            live.discard(self)
            self._loop.close()
            with self._lock:
                self._space.notify_all()

    async def _run(self) -> None:
        delay, failures = _BACKOFF[0], 0
        while not self._done():
            try:
                async with connect(
                    self.uri,
                    compression=None,
                    max_size=self.max_frame_bytes,
                    additional_headers=self.headers,
                    open_timeout=10,
                    ping_interval=20,
                    ping_timeout=60,
                    close_timeout=2,
                ) as ws:
                    log.info("connected to %s", self.uri)
                    self._read_limits(ws)
                    delay, failures = _BACKOFF[0], 0
                    if self.refused is not None:
                        log.warning("%s takes this client again", self.uri)
                        self._relayout()
                        self.refused = None
                    self.connected.set()
                    await self._session(ws)
                    continue
            except websockets.InvalidStatus as exc:
                response = exc.response
                if response.status_code in _REFUSALS or protocol.INGEST_PORT_HEADER in (
                    response.headers
                ):
                    self._refuse(ServerError(self._refusal(response)))
                    delay = _REFUSED_RETRY
                elif failures == 0:
                    status = exc.response.status_code
                    log.warning("%s answered HTTP %d; retrying in the background", self.uri, status)
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as exc:
                self.refused = None  # no server now: keep what comes, as for any outage
                if failures == 0:
                    log.warning(
                        "cannot reach %s (%s); keeping data, retrying in the background",
                        self.uri,
                        exc,
                    )
            except Exception as exc:  # a bug of ours must not stop delivery for good
                log.exception("the connection to %s failed", self.uri)
                self._report(ServerError(f"the connection to {self.uri} failed: {exc!r}"))
            finally:
                self.connected.clear()
            failures += 1
            await self._sleep(delay)
            delay = max(_BACKOFF[0], min(delay * 2, _BACKOFF[1]))

    def _read_limits(self, ws: ClientConnection) -> None:
        advertised = ws.response.headers.get(protocol.MAX_FRAME_HEADER) if ws.response else None
        try:
            server = int(advertised) if advertised else self.max_frame_bytes
        except ValueError:
            server = self.max_frame_bytes
        self.frame_limit = min(server, self.max_frame_bytes)

    def _report(self, error: ServerError, what: str | None = None) -> None:
        self.reports.report(error, what)

    def _refusal(self, response: Any) -> str:
        """What to tell the user when the server refused the handshake with ``response``."""
        status, where = response.status_code, self.uri
        body = bytes(response.body or b"").decode("utf-8", "replace")
        if status in (401, 403) and "token" in body:
            hint = "pass the server's token as Client(..., token=...) or set STREAMVIS_TOKEN"
        elif (ingest := response.headers.get(protocol.INGEST_PORT_HEADER)) is not None:
            hint = (
                "that is the server's page port (--bokeh_port); clients connect to its ingest "
                f"port (--rest_port), here {ingest}"
            )
        elif status == 404:
            hint = "is that the server's ingest port (--rest_port, default 8080)?"
        else:
            hint = body.strip() or "refused"
        return (
            f"{where} refused this client (HTTP {status}): {hint}; meanwhile its calls are "
            "dropped, not kept"
        )

    def _refuse(self, error: ServerError) -> None:
        """The server refuses this client: drop what it holds, and wake sync() waiters."""
        self._report(error)
        with self._lock:
            self.refused = error
            dropped = [*self._pending, *self._held.values(), *self._restored]
            buffers = [i.buffer for i in dropped] + [s.buffer for s in self._unacked]
            for done in [i.done for i in dropped] + [s.done for s in self._unacked]:
                if done is not None:
                    done.set()
            for queue in (self._pending, self._held, self._restored, self._unacked):
                queue.clear()
            self._last_replace.clear()
            self._buffered = 0
            for waiter in self._waiters:
                waiter.set()
            self._space.notify_all()
        for buffer in buffers:
            if buffer is not None:
                self.pool.give(buffer)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _session(self, ws: ClientConnection) -> None:
        receiver = asyncio.create_task(self._receive(ws))
        try:
            with self._lock:
                resend = list(self._unacked)
            await self._write(ws, resend)
            if resend:
                log.info("resent %d unacknowledged frames", len(resend))
                sync = Outgoing("sync")
                with self._lock:
                    self._buffered += sync.nbytes  # as if queued: _send accounts for it
                await self._send(ws, [sync])
            while not self._done():
                batch, due = self._take()
                if batch:
                    await self._send(ws, batch)
                    continue
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    [waiter, receiver], timeout=due, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                if receiver.done():
                    receiver.result()  # raises the connection's error
                    return  # the server closed it cleanly: connect again
        finally:
            receiver.cancel()

    def _take(self) -> tuple[list[Outgoing], float | None]:
        """The next batch to send, and the seconds until a held replace is due (if any).

        A plot's replace sent less than ``replace_interval`` ago is held back, and later
        replaces of that plot overwrite it; it goes once due, or before anything that must
        follow it: a call to the same plot, a layout, clear or sync (so flush sends it).
        """
        batch: list[Outgoing] = []
        size = 0
        now = time.monotonic()
        with self._lock:
            if self._restored and now < self._restore_at:  # nothing may overtake them
                return batch, self._restore_at - now
            while self._restored:  # sent before anything queued since
                size += self._release(self._restored.popleft(), batch, now)
            for name in [n for n in self._held if self._replace_due(n, now) <= 0]:
                size += self._release(self._held.pop(name), batch, now)
            while self._pending and len(batch) < _BATCH_FRAMES and size < _BATCH_BYTES:
                item = self._pending.popleft()
                if item.op != "plot":
                    for held in self._held.values():
                        size += self._release(held, batch, now)
                    self._held.clear()
                elif item.name in self._held:
                    size += self._release(self._held.pop(item.name), batch, now)
                elif (
                    item.replace and item.name is not None and self._replace_due(item.name, now) > 0
                ):
                    self._held[item.name] = item
                    continue
                size += self._release(item, batch, now)
            if not batch:
                self._idle = True
            due = min((self._replace_due(n, now) for n in self._held), default=None)
        return batch, due

    def _replace_due(self, name: str, now: float) -> float:
        return self._replaced_at.get(name, -self.replace_interval) + self.replace_interval - now

    def _release(self, item: Outgoing, batch: list[Outgoing], now: float) -> int:
        """Put ``item`` in ``batch`` (returning its size): later replaces of its plot no longer
        overwrite it."""
        if item.name is not None:
            if self._last_replace.get(item.name) is item:
                del self._last_replace[item.name]
            if item.replace:
                self._replaced_at[item.name] = now
        batch.append(item)
        return item.nbytes

    async def _send(self, ws: ClientConnection, batch: list[Outgoing]) -> None:
        # Every frame is numbered and kept before the first is sent: if the connection
        # drops midway, the rest of the batch is resent after reconnecting, not lost.
        frames = [self._encode(item, ack=i == len(batch) - 1) for i, item in enumerate(batch)]
        with self._lock:
            self._unacked.extend(frames)
            self._buffered += sum(len(f.data) for f in frames) - sum(i.nbytes for i in batch)
        await self._write(ws, frames)

    async def _write(self, ws: ClientConnection, frames: list[_Sent]) -> None:
        """Send frames, joining small ones into one message (websockets costs per message)."""
        limit = min(_JOIN_BYTES, self.frame_limit)
        group: list[bytes | memoryview] = []
        size = 0
        for sent in frames:
            alone = len(sent.data) >= min(limit, JOIN_BELOW)
            if group and (alone or size + len(sent.data) > limit):
                await ws.send(b"".join(group))  # order matters: the server drops seqs it passed
                group, size = [], 0
            if alone:
                await ws.send(sent.data)
            else:
                group.append(sent.data)
                size += len(sent.data)
        if group:
            await ws.send(b"".join(group))

    def _encode(self, item: Outgoing, ack: bool) -> _Sent:
        seq = self._seq
        self._seq += 1
        frame = protocol.Frame(
            op=item.op,
            run=self.run,
            cid=self.cid,
            seq=seq,
            name=item.name,
            opts=self._remember(item),
            arrays=item.arrays,
            ack=ack,
            restore=item.restore,
        )
        try:
            data = self._frame_bytes(frame, item.buffer)
        except Exception as exc:  # the caller checked its values; this is the last guard
            data = b""
            self._report(
                ServerError(f"frame {seq} for plot {item.name!r} cannot be encoded: {exc}")
            )
        if len(data) > self.frame_limit:
            self._report(
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
            return _Sent(seq, data, item.done, None, item.restores)
        return _Sent(seq, data, item.done, item.buffer, item.restores)

    def _remember(self, item: Outgoing) -> Mapping[str, Any]:
        """Note the layout and fig_kwargs ``item`` sends (to restore them if the server loses
        them); return its options, with fig_kwargs the server must be given again."""
        name, opts = item.name, item.opts
        if item.op == "clear":
            self._figs.clear()
            self._figs_sent.clear()
        elif name is not None:
            if "fig" in opts:
                self._figs_sent.append((self._seq - 1, name, opts["fig"]))
            elif name in self._fig_due and name in self._figs:
                opts = {**opts, "fig": self._figs[name]}
            self._fig_due.discard(name)
        return opts

    def _relayout(self) -> None:
        """Send this client's layout first, and each plot's fig_kwargs with its next frame
        (after the server refused the client, it may have missed them)."""
        with self._lock:
            if self._layout is not None:
                self._restored.appendleft(Outgoing("layout", opts=self._layout))
            self._fig_due = set(self._figs)

    def _restore(self, seq: int, reason: str, stored: bool = True) -> None:
        """The server ignores this client's frames from ``seq`` on: it lost the place of that
        frame's plot, or could not store it (``stored`` False). Queue every frame from
        ``seq`` on to go first: after this client's layout, or after a pause."""
        with self._lock:
            if not any(sent.seq == seq for sent in self._unacked):
                return  # a stale answer: those frames went again already
            tail = [sent for sent in self._unacked if sent.seq >= seq]
            while self._unacked and self._unacked[-1].seq >= seq:
                self._unacked.pop()
            layout = self._layout if stored else None
            items = [Outgoing("layout" if layout else "sync", opts=layout or {}, restore=True)]
            for sent in tail:
                self._buffered -= len(sent.data)
                item = self._unsent(sent, refused=sent.seq == seq)
                if item.restores > _MAX_RESTORES:  # its plot never finds a place
                    self._report(ServerError(f"a frame was dropped: {reason}"), reason)
                    self._drop(item)
                    continue
                items.append(item)
            self._buffered += sum(item.nbytes for item in items)
            self._restored.extendleft(reversed(items))
            self._fig_due = set(self._figs)
            self._pause(stored)
        if stored:
            log.warning(
                "run %r lost this client's layout on the server (deleted, cleared or laid "
                "out anew by another client): restoring it and resending %d frames",
                self.run,
                len(tail),
            )
        self._wake.set()

    def _pause(self, placed: bool) -> None:
        """When restored frames may go: a lost place is restored at once, unstored frames
        after a pause; either waits longer each time it recurs within ``_RETRY[1]`` (two
        clients that lay a run out differently would otherwise rebuild its pages at every
        step)."""
        now = time.monotonic()
        if now - self._restored_at > _RETRY[1]:
            self._retry = 0.0
        delay = self._retry if placed else max(self._retry, _RETRY[0])
        self._retry = min(max(delay * 2, _RETRY[0]), _RETRY[1])
        self._restore_at, self._restored_at = now + delay, now

    def _drop(self, item: Outgoing) -> None:
        """Give up ``item``: free its buffer, and release whoever waits for it."""
        if item.buffer is not None:
            self.pool.give(item.buffer)
        if item.done is not None:
            item.done.set()

    def _unsent(self, sent: _Sent, refused: bool) -> Outgoing:
        """The item ``sent`` was made from, to send again (holding ``sent``'s buffer);
        ``refused`` counts one more refusal of it."""
        frame = protocol.decode(sent.data, _TRUSTED)
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

    @staticmethod
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

    async def _receive(self, ws: ClientConnection) -> None:
        async for message in ws:
            try:
                reply = protocol.decode_reply(message)
            except StreamvisError as exc:
                self._report(ServerError(f"{self.uri} is not a streamvis server? {exc}"))
                continue
            seq, plot, err = reply.get("seq"), reply.get("name"), reply.get("err")
            code = reply.get("code")
            if code in (protocol.UNPLACED, protocol.UNSTORED) and isinstance(seq, int):
                self._restore(seq, str(err), stored=code == protocol.UNPLACED)
            if err is not None and code is None:  # refused: a restore must not send them again
                self._figs_sent = deque(f for f in self._figs_sent if f[0] != seq)
            if code == protocol.UNSTORED:  # the same trouble for every frame: one report
                self._report(ServerError(f"the server reports: {err}"), protocol.UNSTORED)
            elif err is not None and code != protocol.UNPLACED:
                if seq is None:
                    text = f"the server reports: {err}"
                else:
                    where = f" (plot {plot!r})" if plot is not None else ""
                    text = f"the server refused frame {seq}{where}: {err}"
                error = ServerError(text, seq=seq, plot=plot)
                self._report(error, str(err))
            if isinstance(reply.get("ack"), int):
                self._acknowledge(reply["ack"])

    def _acknowledge(self, seq: int) -> None:
        while self._figs_sent and self._figs_sent[0][0] <= seq:
            _, name, fig = self._figs_sent.popleft()  # taken: what a restore sends again
            self._figs[name] = fig
        with self._lock:
            while self._unacked and self._unacked[0].seq <= seq:
                sent = self._unacked.popleft()
                self._buffered -= len(sent.data)
                if sent.done is not None:
                    sent.done.set()
                if sent.buffer is not None:
                    self.pool.give(sent.buffer)
            self._space.notify_all()
        if self._closing:
            self._wake.set()
