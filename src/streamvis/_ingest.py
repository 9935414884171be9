"""The ingest endpoint: who may connect, and what each message of frames does to the runs.

A connection is refused before its handshake completes if it comes from a browser page
(``Origin``), names a foreign ``Host``, or lacks the token. Connections are bounded in
number (by the process's file limit): at the bound, the longest idle one is closed to make
room, since a streamvis client reconnects by itself and an idle attacker's does not.

Each frame of a message is applied, refused or ignored on its own: one bad frame costs
itself, and its refusal names its ``seq``. A plot frame with no place in the run's layout
(the run was deleted, cleared or laid out anew by someone else) asks the client to restore
its layout: the server ignores that client's frames until the restored ones arrive (see
:mod:`protocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from http import HTTPStatus
from typing import Any

import websockets
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from . import _protocol as protocol
from ._errors import StreamvisError, UnknownPlot
from ._guard import Guard, hide_tokens
from ._hub import Hub
from ._page.figures import check_fig_kwargs
from ._state import Admitted, RunState

__all__ = ["INGEST_PATH", "Ingest"]

log = logging.getLogger("streamvis.server")
hide_tokens("websockets.server")

INGEST_PATH = protocol.INGEST_PATH
_INGEST_SLICE = 0.005  # seconds of ingest before pages get a turn on the loop
# A frame of a message to store: admitted (None: resent while its first copy is being
# stored, so its acknowledgement waits for that), the frame, and its bytes to store.
_Entry = tuple[Admitted | None, protocol.Frame, memoryview]


class Ingest:
    """The connections of the ingest endpoint, applying their frames to ``hub``."""

    def __init__(
        self, hub: Hub, guard: Guard, limits: protocol.Limits, max_connections: int
    ) -> None:
        self.hub, self.guard, self.limits = hub, guard, limits
        self.max_connections = max_connections
        self._active: dict[ServerConnection, float] = {}  # open connections: last message at
        self._closing: set[asyncio.Future[None]] = set()  # evicted connections, closing
        self._restorers: set[object] = set()  # connections of clients that can restore

    def is_live(self, run: str) -> bool:
        """Whether a client of ``run`` is connected: the connection it last sent on is open."""
        state = self.hub.runs.get(run)
        return state is not None and any(c in self._active for c in state.senders.values())

    def check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse a handshake that is not a streamvis client's (a response), or let it on."""
        peer, headers = connection.remote_address, request.headers
        if len(headers.get_all("Host")) != 1:
            return connection.respond(HTTPStatus.BAD_REQUEST, "streamvis: one Host header\n")
        if request.path.split("?")[0] != INGEST_PATH:
            return connection.respond(
                HTTPStatus.NOT_FOUND, f"streamvis ingest is at {INGEST_PATH}, not {request.path}\n"
            )
        if "Origin" in headers:
            log.warning("refused ingest from a web page at %r (%s)", headers["Origin"], peer)
            return connection.respond(
                HTTPStatus.FORBIDDEN, "streamvis: web pages may not send to the ingest endpoint\n"
            )
        if not self.guard.host_allowed(headers.get("Host")):
            log.warning("refused ingest for foreign Host %r (%s)", headers.get("Host"), peer)
            return connection.respond(
                HTTPStatus.FORBIDDEN, "streamvis: connect as localhost or by IP address\n"
            )
        if not self.guard.bearer_matches(headers.get("Authorization")):
            log.warning("refused ingest from %s: wrong or missing token", peer)
            return connection.respond(
                HTTPStatus.UNAUTHORIZED,
                "streamvis: wrong or missing token: "
                "pass Client(..., token=...) or set STREAMVIS_TOKEN\n",
            )
        if headers.get(protocol.RESTORES_HEADER) == "1":
            self._restorers.add(connection)
        if len(self._active) >= self.max_connections:
            idlest = min(self._active, key=self._active.__getitem__)
            log.warning(
                "%d ingest connections: closing the one idle longest (%s)",
                len(self._active),
                idlest.remote_address,
            )
            del self._active[idlest]
            task = asyncio.ensure_future(idlest.close(1013, "too many connections"))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return None

    def advertise_limits(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> Response:
        """Tell the client the largest frame this server takes."""
        response.headers[protocol.MAX_FRAME_HEADER] = str(self.limits.max_frame_bytes)
        return response

    async def handle(self, ws: ServerConnection) -> None:
        """Serve one client connection until it closes."""
        peer = ws.remote_address
        log.info("client connected from %s", peer)
        self._active[ws] = yielded = time.monotonic()
        replies: asyncio.Queue[asyncio.Future[list[dict[str, Any]]] | None] = asyncio.Queue()
        sender = asyncio.ensure_future(self._send_replies(ws, replies))
        try:
            if self.hub.loaded is not None:
                await asyncio.shield(self.hub.loaded)  # stored runs first: then what comes
            async for message in ws:
                replies.put_nowait(self.receive(message, peer, ws))
                self._active[ws] = time.monotonic()
                if time.monotonic() - yielded > _INGEST_SLICE:
                    # Buffered messages never suspend this loop: let pages have their turn.
                    await asyncio.sleep(0)
                    yielded = time.monotonic()
        except websockets.ConnectionClosed:
            pass
        finally:
            self._active.pop(ws, None)
            self._restorers.discard(ws)
            replies.put_nowait(None)
            with contextlib.suppress(websockets.ConnectionClosed):
                await sender
            log.info("client from %s disconnected", peer)

    @staticmethod
    async def _send_replies(
        ws: ServerConnection, replies: asyncio.Queue[asyncio.Future[list[dict[str, Any]]] | None]
    ) -> None:
        """Send each message's replies in the order the messages came, once they are ready
        (an ack once what it acknowledges is stored)."""
        while (ready := await replies.get()) is not None:
            for reply in await ready:
                await ws.send(protocol.encode_reply(reply))

    def receive(
        self, message: bytes | str, peer: Any, connection: object = None
    ) -> asyncio.Future[list[dict[str, Any]]]:
        """Decode, admit and store one message (one or more frames) that came on
        ``connection``; the future of its replies, done once they may be sent."""
        replies: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        if isinstance(message, str):
            text = "text message refused: streamvis frames are binary (streamvis.Client)"
            replies.set_result([{"err": text}])
            return replies
        try:
            items = protocol.decode_many(message, self.limits)
        except Exception as exc:  # a decoder bug must not close the connection
            log.exception("decoding a message from %s failed", peer)
            replies.set_result([{"err": f"malformed frame: {exc!r}"}])
            return replies
        sent: list[dict[str, Any]] = []
        batches: dict[str, list[_Entry]] = {}
        ack = None
        for item in items:
            if isinstance(item, protocol.BadFrame):
                log.warning("malformed frame %s from %s: %s", item.seq, peer, item.error)
                sent.append({"err": f"malformed frame: {item.error}", "seq": item.seq})
                ack = item.seq if item.seq is not None else ack  # refused for good
                continue
            frame, data = item
            state = self.hub.state(frame.run)
            told = state.restoring.get(frame.cid, self)  # self: nobody was told
            if frame.restore or told is not connection:
                state.restoring.pop(frame.cid, None)  # restored, or resent after a reconnect
            else:
                continue  # sent before the client heard it must restore: it resends it
            state.senders[frame.cid] = connection
            admitted, refusal = self._admit(state, frame)
            if refusal is not None:
                if connection not in self._restorers:
                    refusal.pop("code", None)  # an older client: refused for good, as it was
                sent.append(refusal)
                if refusal.get("code") == protocol.UNPLACED:
                    state.restoring[frame.cid] = connection
                    continue  # neither applied nor acknowledged: the client restores it
            elif admitted is not None:
                batches.setdefault(frame.run, []).append((admitted, *_as_stored(admitted, data)))
            elif frame.seq > state.last_seq.get(frame.cid, -1):  # resent while being stored:
                batches.setdefault(frame.run, []).append((None, frame, data))  # its fate
            if frame.ack or refusal is not None:
                ack = frame.seq  # frames apply in order: this acknowledges all before it too
        self._store(batches, sent, ack, connection, replies)
        return replies

    def _store(
        self,
        batches: dict[str, list[_Entry]],
        sent: list[dict[str, Any]],
        ack: int | None,
        connection: object,
        replies: asyncio.Future[list[dict[str, Any]]],
    ) -> None:
        """Store each run's admitted frames; then the replies are ready: the ack, or for
        frames that could not be stored, where their clients resend from."""
        waiting = len(batches)
        failed = False

        def stored(run: str, error: StreamvisError | None) -> None:
            nonlocal waiting, failed
            if error is not None:
                failed = True
                frames = [frame for _, frame, _ in batches[run]]
                sent.extend(self._unstored(run, frames, connection, error))
            waiting -= 1
            if waiting == 0 and not replies.done():
                acked = ack is not None and not failed
                replies.set_result(sent + ([{"ack": ack}] if acked else []))

        if not batches:
            replies.set_result(sent + ([{"ack": ack}] if ack is not None else []))
        for run, batch in list(batches.items()):
            admitted = [(a, data) for a, _, data in batch if a is not None]
            self.hub.store_and_apply(run, admitted, functools.partial(stored, run))

    def _unstored(
        self, run: str, frames: list[protocol.Frame], connection: object, error: StreamvisError
    ) -> list[dict[str, Any]]:
        """Replies telling each client whose frames could not be stored to resend them."""
        state, first = self.hub.state(run), dict[str, int]()
        for frame in frames:
            first.setdefault(frame.cid, frame.seq)
        text = (
            f"the server could not store run {run!r} ({error}): nothing from here on is "
            "acknowledged; the client keeps it and sends it again (free space under "
            "--data_dir, or run the server with --no_persist)"
        )
        for cid in first:
            state.restoring[cid] = connection
        return [{"err": text, "seq": seq, "code": protocol.UNSTORED} for seq in first.values()]

    def _admit(
        self, state: RunState, frame: protocol.Frame
    ) -> tuple[Admitted | None, dict[str, Any] | None]:
        """Admit one frame: (what to store, or None for a duplicate; the refusal, if any)."""
        try:
            return state.admit(frame, check_fig_kwargs), None
        except UnknownPlot as exc:
            log.info("run %r: plot %r has no place; its client restores it", frame.run, frame.name)
            code = protocol.UNPLACED
            return None, {"err": str(exc), "seq": frame.seq, "name": frame.name, "code": code}
        except StreamvisError as exc:
            log.warning("run %r refused frame %d (%r): %s", frame.run, frame.seq, frame.name, exc)
            return None, {"err": str(exc), "seq": frame.seq, "name": frame.name}
        except Exception as exc:
            log.exception("admitting frame %d of run %r failed", frame.seq, frame.run)
            return None, {"err": f"server failed checking the frame: {exc!r}", "seq": frame.seq}


def _as_stored(admitted: Admitted, data: memoryview) -> tuple[protocol.Frame, memoryview]:
    """The frame and bytes to store: a restored layout as it applies, merged with the cells
    others laid out (so a restarted server lays the run out the same)."""
    frame = admitted.frame
    if frame.op != "layout" or admitted.cells is None or not frame.restore:
        return frame, data
    cells = {name: list(cell) for name, cell in admitted.cells.items()}
    merged = dataclasses.replace(frame, opts={"cells": cells}, restore=False)
    return frame, memoryview(protocol.encode(merged))
