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
import logging
import time
from http import HTTPStatus
from typing import Any

import websockets
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from . import protocol
from .errors import StreamvisError, UnknownPlot
from .guard import Guard
from .hub import Hub

__all__ = ["INGEST_PATH", "Ingest"]

log = logging.getLogger("streamvis.server")

INGEST_PATH = protocol.INGEST_PATH
_INGEST_SLICE = 0.005  # seconds of ingest before pages get a turn on the loop


class Ingest:
    """The connections of the ingest endpoint, applying their frames to ``hub``."""

    def __init__(
        self, hub: Hub, guard: Guard, limits: protocol.Limits, max_connections: int
    ) -> None:
        self.hub, self.guard, self.limits = hub, guard, limits
        self.max_connections = max_connections
        self._active: dict[ServerConnection, float] = {}  # open connections: last message at
        self._pending_acks: set[asyncio.Future[None]] = set()  # acks waiting for the log

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
        if len(self._active) >= self.max_connections:
            idlest = min(self._active, key=self._active.__getitem__)
            log.warning(
                "%d ingest connections: closing the one idle longest (%s)",
                len(self._active),
                idlest.remote_address,
            )
            del self._active[idlest]
            task = asyncio.ensure_future(idlest.close(1013, "too many connections"))
            self._pending_acks.add(task)
            task.add_done_callback(self._pending_acks.discard)
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
        try:
            async for message in ws:
                run, replies = self.receive(message, peer, ws)
                self._active[ws] = time.monotonic()
                for reply in replies:
                    writing = self.hub.written(run) if "ack" in reply else None
                    if writing is None:
                        await ws.send(protocol.encode_reply(reply))
                    else:  # acknowledged once the log holds it; receive on meanwhile
                        task = asyncio.ensure_future(self._send_after(ws, writing, reply))
                        self._pending_acks.add(task)
                        task.add_done_callback(self._pending_acks.discard)
                if time.monotonic() - yielded > _INGEST_SLICE:
                    # Buffered messages never suspend this loop: let pages have their turn.
                    await asyncio.sleep(0)
                    yielded = time.monotonic()
        except websockets.ConnectionClosed:
            pass
        finally:
            self._active.pop(ws, None)
            log.info("client from %s disconnected", peer)

    @staticmethod
    async def _send_after(
        ws: ServerConnection, written: asyncio.Future[list[str]], reply: dict[str, Any]
    ) -> None:
        failures = await written
        with contextlib.suppress(websockets.ConnectionClosed):  # the client resends it all
            for failure in failures:
                message = (
                    f"the server could not write a run log ({failure}): the data is shown, "
                    "but a restarted server will not have it; free space under --data_dir "
                    "or run the server with --no_persist"
                )
                await ws.send(protocol.encode_reply({"err": message}))
            await ws.send(protocol.encode_reply(reply))

    def receive(
        self, message: bytes | str, peer: Any, connection: object = None
    ) -> tuple[str | None, list[dict[str, Any]]]:
        """Decode and apply one message (one or more frames) that came on ``connection``;
        return its run and the replies."""
        if isinstance(message, str):
            return None, [
                {"err": "text message refused: streamvis frames are binary (streamvis.Client)"}
            ]
        try:
            items = protocol.decode_many(message, self.limits)
        except Exception as exc:  # a decoder bug must not close the connection
            log.exception("decoding a message from %s failed", peer)
            return None, [{"err": f"malformed frame: {exc!r}"}]
        replies: list[dict[str, Any]] = []
        ack, run = None, None
        for item in items:
            if isinstance(item, protocol.BadFrame):
                log.warning("malformed frame %s from %s: %s", item.seq, peer, item.error)
                replies.append({"err": f"malformed frame: {item.error}", "seq": item.seq})
                ack = item.seq if item.seq is not None else ack  # refused for good
                continue
            frame, data = item
            run, state = frame.run, self.hub.state(frame.run)
            told = state.restoring.get(frame.cid, self)  # self: nobody was told
            if frame.restore or told is not connection:
                state.restoring.pop(frame.cid, None)  # restored, or resent after a reconnect
            else:
                continue  # sent before the client heard it must restore: it resends it
            refusal = self._apply(frame, data)
            if refusal is not None:
                replies.append(refusal)
                if refusal.get("code") == protocol.UNPLACED:
                    state.restoring[frame.cid] = connection
                    continue  # neither applied nor acknowledged: the client restores it
            elif not frame.ack:
                continue
            ack = frame.seq  # frames apply in order: this acknowledges all before it too
        if ack is not None:
            replies.append({"ack": ack})
        return run, replies

    def _apply(self, frame: protocol.Frame, data: memoryview) -> dict[str, Any] | None:
        """Apply one frame; return the error reply if it is refused (or None)."""
        try:
            self.hub.apply(frame, data)
        except UnknownPlot as exc:
            log.info("run %r: plot %r has no place; its client restores it", frame.run, frame.name)
            code = protocol.UNPLACED
            return {"err": str(exc), "seq": frame.seq, "name": frame.name, "code": code}
        except StreamvisError as exc:
            log.warning("run %r refused frame %d (%r): %s", frame.run, frame.seq, frame.name, exc)
            return {"err": str(exc), "seq": frame.seq, "name": frame.name}
        except Exception as exc:
            log.exception("applying frame %d of run %r failed", frame.seq, frame.run)
            return {"err": f"server failed applying the frame: {exc!r}", "seq": frame.seq}
        return None
