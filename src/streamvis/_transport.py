"""The client's background sender: one thread, its own event loop, one websocket.

Callers hand it ``Outgoing`` items; it numbers, encodes and sends them, keeps every sent
frame until the server acknowledges it, and resends the unacknowledged ones after a
reconnect. A caller never waits on the network, except when the buffer is full. Nothing
that goes wrong in the thread stops it: errors are kept for the caller's next call.
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
from .errors import ServerError, StreamvisError

log = logging.getLogger(__name__)

_BATCH_FRAMES = 64
_BATCH_BYTES = 8 * 2**20
_BACKOFF = (0.05, 2.0)
_JOIN_BYTES = 2**20  # small frames travel together in messages of up to this size...
_JOIN_BELOW = 2**16  # ...larger ones alone: joining them would copy more than it saves
ITEM_OVERHEAD = 256  # what a frame's header adds to its arrays, roughly, for buffer accounting
_HEAD_ROOM = 1024  # free bytes before a pooled frame's arrays, where its head goes
_PAD_ROOM = 8  # at most what padding adds to an array
_POOL_BYTES = 64 * 2**20  # free buffers kept for reuse, at most
_POOL_SIZES = 4  # sizes of free buffers kept

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
    buffer: np.ndarray | None = None  # pooled memory holding the arrays, after _HEAD_ROOM
    nbytes: int = 0  # for buffer accounting: the arrays' bytes plus ITEM_OVERHEAD

    def __post_init__(self) -> None:
        if not self.nbytes:  # callers that know it pass it (with the overhead)
            self.nbytes = sum(a.nbytes for a in self.arrays) + ITEM_OVERHEAD


@dataclass(eq=False)
class _Sent:
    seq: int
    data: bytes | memoryview
    done: threading.Event | None
    buffer: np.ndarray | None  # what ``data`` views, back to the pool once acknowledged


class BufferPool:
    """Buffers for large frames, reused once acknowledged.

    Memory fresh from the OS costs a page fault per 4 KiB page on first write, which is
    many times the cost of copying into it; a reused buffer costs only the copy. Free
    buffers are kept per size, in deques (thread-safe without a lock), for at most
    ``_POOL_SIZES`` sizes and ``max_free_bytes // _POOL_SIZES`` bytes of each.
    """

    def __init__(self, max_free_bytes: int) -> None:
        self.max_free_bytes = max_free_bytes
        self._free: dict[int, deque[np.ndarray]] = {}

    def copy(
        self, arrays: tuple[np.ndarray, ...], nbytes: int
    ) -> tuple[tuple[np.ndarray, ...], np.ndarray | None]:
        """Private C-ordered little-endian copies of ``arrays`` (``nbytes`` in all), and the
        pooled buffer that holds them if they fill a message of their own.

        In the buffer they lie as a frame carries them, after room for the frame's head.
        """
        if nbytes < _JOIN_BELOW:
            return tuple([np.array(a, _wire_dtype(a.dtype), order="C") for a in arrays]), None
        buffer = self.take(_HEAD_ROOM + nbytes + _PAD_ROOM * len(arrays))
        copies = []
        start = _HEAD_ROOM
        for array in arrays:
            end = start + array.nbytes
            copy = np.ndarray(array.shape, _wire_dtype(array.dtype), buffer, start)
            copy[...] = array
            copies.append(copy)
            start = protocol.padded(end)
            if start > end:
                buffer[end:start] = 0
        return tuple(copies), buffer

    def take(self, nbytes: int) -> np.ndarray:
        """A uint8 buffer of at least ``nbytes``: a free one if there is one of its size."""
        size = _size_class(nbytes)
        free = self._free.get(size)
        if free:
            try:
                return free.pop()
            except IndexError:  # another thread took the last one
                pass
        return np.empty(size, np.uint8)

    def give(self, buffer: np.ndarray) -> None:
        """Return ``buffer``, which nothing may use any more; the oldest beyond the cap go."""
        size = buffer.nbytes
        free = self._free.get(size)
        if free is None:
            limit = self.max_free_bytes // _POOL_SIZES // size
            if not limit:
                return  # too large to keep
            if len(self._free) >= _POOL_SIZES:
                self._free = {}  # the sizes in use changed: the free buffers are stale
            free = self._free[size] = deque(maxlen=limit)
        free.append(buffer)


def _size_class(nbytes: int) -> int:
    """``nbytes`` rounded up to 1/16 of its power of two (at least a page): reusable sizes."""
    shift = max(nbytes.bit_length() - 4, 12)
    return -(-nbytes >> shift) << shift


def _wire_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    return dtype if dtype.isnative else dtype.newbyteorder("<")


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
    ) -> None:
        self.uri, self.run, self.cid = uri, run, cid
        self.replace_interval = replace_interval
        self.max_buffer_bytes = max_buffer_bytes
        self.max_frame_bytes = max_frame_bytes
        self.frame_limit = max_frame_bytes  # and the server's limit, once it says it
        self.exit_timeout = exit_timeout
        self.headers = dict(headers or {})
        self.connected = threading.Event()
        self.errors: deque[ServerError] = deque()  # reported, not yet taken by pop_errors
        self._waiters: set[threading.Event] = set()
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self.pool = BufferPool(min(_POOL_BYTES, max_buffer_bytes // 8))
        self._pending: deque[Outgoing] = deque()
        self._last_replace: dict[str, Outgoing] = {}  # queued replaces, which later ones overwrite
        self._held: dict[str, Outgoing] = {}  # replaces waiting out replace_interval
        self._replaced_at: dict[str, float] = {}  # when each plot's last replace was sent
        self._unacked: deque[_Sent] = deque()
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
            and self._thread.is_alive()
        ):
            self._space.wait(timeout=1.0)

    def sync(self, timeout: float | None) -> bool:
        """Wait until everything submitted so far is acknowledged; False on timeout or error."""
        done = threading.Event()
        with self._lock:
            self._waiters.add(done)
        try:
            self.submit(Outgoing("sync", done=done))
            return done.wait(timeout) and not self.errors
        finally:
            with self._lock:
                self._waiters.discard(done)

    def pop_errors(self) -> list[ServerError]:
        """Take the errors the server (or the connection) reported since the last call."""
        if not self.errors:  # the common case, on every call
            return []
        errors = []
        with contextlib.suppress(IndexError):
            while True:
                errors.append(self.errors.popleft())
        return errors

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
        idle = not self._pending and not self._held and not self._unacked
        return self._stopping or (self._closing and idle)

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
                    self.connected.set()
                    await self._session(ws)
                    continue
            except websockets.InvalidStatus as exc:
                status = exc.response.status_code
                message = f"server at {self.uri} refused the connection (HTTP {status})"
                if status in (401, 403):
                    message += (
                        ": pass the server's token as Client(..., token=...) or STREAMVIS_TOKEN"
                    )
                if failures == 0:
                    self._report(ServerError(message))
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as exc:
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
            delay = min(delay * 2, _BACKOFF[1])

    def _read_limits(self, ws: ClientConnection) -> None:
        advertised = ws.response.headers.get(protocol.MAX_FRAME_HEADER) if ws.response else None
        try:
            server = int(advertised) if advertised else self.max_frame_bytes
        except ValueError:
            server = self.max_frame_bytes
        self.frame_limit = min(server, self.max_frame_bytes)

    def _report(self, error: ServerError) -> None:
        """Keep ``error`` for the caller's next call, and wake anyone waiting in sync()."""
        log.error("%s", error)
        self.errors.append(error)
        with self._lock:
            for waiter in self._waiters:
                waiter.set()

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
                    raise websockets.ConnectionClosedOK(None, None)
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
            alone = len(sent.data) >= min(limit, _JOIN_BELOW)
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
            opts=item.opts,
            arrays=item.arrays,
            ack=ack,
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
            return _Sent(seq, data, item.done, None)
        return _Sent(seq, data, item.done, item.buffer)

    @staticmethod
    def _frame_bytes(frame: protocol.Frame, buffer: np.ndarray | None) -> bytes | memoryview:
        """The frame's bytes: a view of its pooled buffer with the head written before the
        arrays, or (no buffer, or a head too long for the room) a joined copy."""
        head = protocol.encode_head(frame) if buffer is not None else b""
        if buffer is None or len(head) > _HEAD_ROOM:
            return protocol.encode(frame)
        start = _HEAD_ROOM - len(head)
        view = buffer.data
        view[start:_HEAD_ROOM] = head
        return view[start : _HEAD_ROOM + sum(protocol.padded(a.nbytes) for a in frame.arrays)]

    async def _receive(self, ws: ClientConnection) -> None:
        async for message in ws:
            try:
                reply = protocol.decode_reply(message)
            except StreamvisError as exc:
                self._report(ServerError(f"{self.uri} is not a streamvis server? {exc}"))
                continue
            if "err" in reply:
                self._report(
                    ServerError(f"server rejected frame {reply.get('seq')}: {reply['err']}")
                )
            if isinstance(reply.get("ack"), int):
                self._acknowledge(reply["ack"])

    def _acknowledge(self, seq: int) -> None:
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
