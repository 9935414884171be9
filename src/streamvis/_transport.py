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
from collections.abc import Mapping
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from . import _protocol as protocol
from ._errors import ServerError, StreamvisError
from ._guard import hide_tokens
from ._pool import JOIN_BELOW, BufferPool
from ._reports import Reports
from ._sendq import ITEM_OVERHEAD, Answer, Outgoing, SendQueue, Sent

__all__ = ["ITEM_OVERHEAD", "Outgoing", "Transport", "live"]

log = logging.getLogger("streamvis.client")
hide_tokens("websockets.client")

_BACKOFF = (0.05, 2.0)
_JOIN_BYTES = 2**20  # small frames travel together in messages of up to this size
_POOL_BYTES = 64 * 2**20  # free buffers kept for reuse, at most
_REFUSALS = (401, 403)  # handshake answers that retrying soon will not change (and a 404
# from a streamvis page port); any other answer may be a proxy's that passes
_REFUSED_RETRY = 2.0  # seconds between attempts while the server refuses this client

live: set[Transport] = set()  # every transport whose thread runs; flushed at exit


class Transport:
    """Delivers Outgoing items to ``uri`` from a daemon thread, at least once, in order.

    A thin adapter: the :class:`SendQueue` decides what to send and what the server's
    answers mean; this class holds the lock around it, blocks callers while the buffer is
    full, and does the I/O.
    """

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
        self.uri, self.run = uri, run
        self.max_frame_bytes = max_frame_bytes
        self.exit_timeout = exit_timeout
        self.headers = dict(headers or {})
        self.connected = threading.Event()
        self.reports = Reports(strict)
        self.refused: ServerError | None = None  # the server refuses this client itself
        self.pool = BufferPool(min(_POOL_BYTES, max_buffer_bytes // 8))
        self.queue = SendQueue(
            run, cid, self.pool, replace_interval=replace_interval, max_bytes=max_buffer_bytes
        )
        self.queue.frame_limit = max_frame_bytes
        self._waiters: set[threading.Event] = set()
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._closing = False  # deliver everything, then stop
        self._stopping = False  # stop now
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        self._thread = threading.Thread(target=self._main, name="streamvis-sender", daemon=True)
        self._alive = True  # until the thread ends: cheaper to check than is_alive()
        live.add(self)
        self._thread.start()

    @property
    def frame_limit(self) -> int:
        """The largest frame sent: this client's limit, or the server's if lower."""
        return self.queue.frame_limit

    # -- caller side (any thread) --------------------------------------------------------

    def submit(self, item: Outgoing) -> None:
        """Queue ``item``; a replace supersedes an unsent replace of the same plot."""
        if not self._alive:
            raise StreamvisError(f"the sender to {self.uri} has stopped: create a new Client")
        queue = self.queue
        with self._lock:
            queue.keep_layout(item)
            if self.refused is not None and item.op != "sync":
                # dropped: kept, it would only fill the buffer until calls block
                if item.buffer is not None:
                    self.pool.give(item.buffer)
                return
            if queue.fold(item):
                return
            if queue.full(item):
                self._wait_for_space(item)
            wake = queue.push(item)
        if wake:
            self._loop.call_soon_threadsafe(self._wake.set)  # a syscall: not under the lock

    def _wait_for_space(self, item: Outgoing) -> None:
        log.warning(
            "%d bytes are waiting for %s (limit max_buffer_bytes=%d); "
            "this call blocks until the server acknowledges some of them",
            self.queue.buffered,
            self.uri,
            self.queue.max_bytes,
        )
        while self.queue.full(item) and self.refused is None and self._thread.is_alive():
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
        if self.queue.buffered > 0 and not delivered:
            log.warning(
                "closed with %d bytes that %s did not acknowledge", self.queue.buffered, self.uri
            )
        return delivered

    def retire(self) -> None:
        """Stop once everything queued is delivered, without waiting (the client is gone)."""
        self._closing = True
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._wake.set)

    # -- sender thread -------------------------------------------------------------------

    def _done(self) -> bool:
        return self._stopping or (self._closing and (self.queue.empty or self.refused is not None))

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
                        with self._lock:
                            self.queue.relayout()
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
                self.reports.report(ServerError(f"the connection to {self.uri} failed: {exc!r}"))
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
        self.queue.frame_limit = min(server, self.max_frame_bytes)

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
        self.reports.report(error)
        with self._lock:
            self.refused = error
            for done in [*self.queue.drop_all(), *self._waiters]:
                done.set()
            self._space.notify_all()

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _session(self, ws: ClientConnection) -> None:
        receiver = asyncio.create_task(self._receive(ws))
        try:
            with self._lock:
                resend = self.queue.resend()
            await self._write(ws, resend)
            if resend:
                log.info("resent %d unacknowledged frames", len(resend))
                sync = Outgoing("sync")
                with self._lock:
                    self.queue.buffered += sync.nbytes  # as if queued: encode accounts for it
                await self._send(ws, [sync])
            while not self._done():
                with self._lock:
                    batch, due = self.queue.take(time.monotonic())
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

    async def _send(self, ws: ClientConnection, batch: list[Outgoing]) -> None:
        # Every frame is numbered and kept before the first is sent: if the connection
        # drops midway, the rest of the batch is resent after reconnecting, not lost.
        frames, errors = self.queue.encode(batch)  # outside the lock: callers are not held up
        with self._lock:
            self.queue.keep(frames, batch)
        for error in errors:
            self.reports.report(error)
        await self._write(ws, frames)

    async def _write(self, ws: ClientConnection, frames: list[Sent]) -> None:
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

    async def _receive(self, ws: ClientConnection) -> None:
        async for message in ws:
            try:
                reply = protocol.decode_reply(message)
            except StreamvisError as exc:
                self.reports.report(ServerError(f"{self.uri} is not a streamvis server? {exc}"))
                continue
            with self._lock:
                answer = self.queue.answer(reply, time.monotonic())
                self._space.notify_all()
            self._act(answer)

    def _act(self, answer: Answer) -> None:
        """Tell the caller what an answer of the server means."""
        for done in answer.done:
            done.set()
        for error, what in answer.errors:
            self.reports.report(error, what)
        if answer.restored:
            log.warning(
                "run %r lost this client's layout on the server (deleted, cleared or laid "
                "out anew by another client): restoring it and resending %d frames",
                self.run,
                answer.restored,
            )
        if answer.wake or self._closing:
            self._wake.set()
