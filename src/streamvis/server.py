"""The streamvis server: Bokeh pages and the websocket ingest endpoint on one asyncio loop.

Frames arrive on ``ws://HOST:INGEST_PORT/ingest``, are decoded (:mod:`protocol`), applied to
the run state (:mod:`state`), acknowledged, and pushed to every open page of that run
(:mod:`session`). ``StreamvisServer`` is embeddable: ``await start()`` / ``await stop()`` on
a running loop, port 0 for an ephemeral port; ``serve_in_thread`` for synchronous code.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

import websockets
from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.document import Document
from bokeh.server.server import BaseServer
from bokeh.server.tornado import BokehTornado
from bokeh.server.util import bind_sockets, create_hosts_allowlist
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.web import RequestHandler
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from . import protocol
from .errors import ArgumentError, ProtocolError, StreamvisError
from .plots.figures import check_fig_kwargs
from .session import DocumentView
from .state import RunState
from .store import Store, Writer

log = logging.getLogger("streamvis.server")

INGEST_PATH = "/ingest"
_INGEST_SLICE = 0.005  # seconds of ingest before pages get a turn on the loop
_INLINE_WRITE = 2**16  # frames smaller than this are logged on the loop when the writer is idle


class Hub:
    """All runs' state, their logs (if persistent), and the pages watching them.

    Logs are written as frames apply until :meth:`write_behind`; from then on by a writer
    thread, and :meth:`written` says when what was applied so far is on disk.
    """

    def __init__(self, store: Store | None = None) -> None:
        self.runs: dict[str, RunState] = {}
        self.store = store
        self._views: dict[str, set[DocumentView]] = {}
        self._writer: Writer | None = None

    def write_behind(self) -> None:
        """Write logs on a thread of their own from now on (call on the serving loop)."""
        if self.store is not None and self._writer is None:
            self._writer = Writer()

    def written(self) -> asyncio.Future[list[str]] | None:
        """A future done once every log write so far is on disk (with what failed); None if
        they already are."""
        return self._writer.written() if self._writer is not None else None

    def _log(self, job: Callable[[Store], None]) -> None:
        """Run ``job`` on the store, on the writer's thread once there is one (in order)."""
        if self.store is None:
            return
        if self._writer is None:
            job(self.store)
        else:
            self._writer.submit(functools.partial(job, self.store))

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

    def apply(self, frame: protocol.Frame, data: bytes | memoryview) -> None:
        """Apply, log and show a frame (``data``: its bytes); raise StreamvisError if refused."""
        state = self.runs.get(frame.run)
        if state is None:
            state = self.runs[frame.run] = RunState(frame.run)
            log.info("new run %r", frame.run)
        changed = state.apply(frame, check_fig_kwargs)
        if not changed:
            return
        if self.store is not None:
            writer = self._writer
            if writer is not None and (writer.busy or len(data) >= _INLINE_WRITE):
                self._log(functools.partial(_write, frame, data, dict(state.last_seq)))
            elif _append(frame, data, self.store):  # inline: cheaper than a handoff
                self._log(functools.partial(_compact, frame.run, dict(state.last_seq)))
        self._notify(frame.run, changed)

    def delete(self, run: str) -> bool:
        """Forget a run and delete its log; False if there was no such run."""
        existed = self.runs.pop(run, None) is not None
        if self.store is not None:
            existed = existed or run in self.store.runs()
            self._log(lambda store: store.delete(run))
        self._notify(run, {""})
        return existed

    def _notify(self, run: str, changed: set[str]) -> None:
        for view in self._views.get(run, ()):
            view.notify(changed)

    def attach(self, view: DocumentView) -> None:
        """Send ``view`` its run's changes from now on."""
        self._views.setdefault(view.run, set()).add(view)

    def detach(self, view: DocumentView) -> None:
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


class _RunsHandler(RequestHandler):
    """``GET /runs``: a plain list of every run, linking to its page; ``DELETE /runs/NAME``."""

    def initialize(self, hub: Hub, token: str | None) -> None:
        self.hub, self.token = hub, token

    def get(self, run: str | None = None) -> None:
        names = self.hub.run_names()
        items = "".join(f'<li><a href="/?run={name}">{name}</a></li>' for name in names)
        self.write(f"<!doctype html><title>streamvis runs</title><ul>{items}</ul>")

    async def delete(self, run: str | None = None) -> None:
        offered = self.request.headers.get("Authorization", "")
        if self.token and not _token_matches(offered, self.token):
            self.set_status(401)
            self.write(
                "deleting a run needs the server's token: -H 'Authorization: Bearer TOKEN'\n"
            )
        elif run is None or not self.hub.delete(run):
            self.set_status(404)
            self.write(f"no run named {run!r}\n")
        else:
            if (deleting := self.hub.written()) is not None:
                await deleting  # the log is gone when this answers
            self.write(f"deleted run {run!r}\n")


def _token_matches(offered: str, token: str) -> bool:
    return hmac.compare_digest(offered.encode(), f"Bearer {token}".encode())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StreamvisServer:
    """Serves Bokeh pages on ``bokeh_port`` and takes client frames on ``ingest_port``.

    ``run_name`` is the run shown at ``/``; any run is shown at ``/?run=NAME``. Binding a
    non-loopback ``host`` requires a ``token`` that clients must present.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        ingest_port: int = 8080,
        bokeh_port: int = 5006,
        run_name: str = "default",
        data_dir: str | Path | None = None,
        token: str | None = None,
        limits: protocol.Limits = protocol.DEFAULT_LIMITS,
        update_interval: float = 0.05,
        allow_websocket_origin: Sequence[str] = (),
    ) -> None:
        if not _is_loopback(host) and not token:
            raise ArgumentError(
                f"binding {host!r} exposes the ingest endpoint beyond this machine: "
                "set a token (--token or STREAMVIS_TOKEN), or bind 127.0.0.1"
            )
        self.host, self.run_name, self.token = host, run_name, token
        self.limits, self.update_interval = limits, update_interval
        self.hub = Hub(Store(Path(data_dir)) if data_dir is not None else None)
        self._requested_ports = (ingest_port, bokeh_port)
        self._origins = list(allow_websocket_origin)
        self._bokeh: BaseServer | None = None
        self._ingest: Server | None = None
        self._pending_acks: set[asyncio.Future[None]] = set()  # acks waiting for the log

    @property
    def ingest_port(self) -> int:
        """The port clients connect to (the real one once started with port 0)."""
        if self._ingest is None:
            return self._requested_ports[0]
        return int(next(iter(self._ingest.sockets)).getsockname()[1])

    @property
    def bokeh_port(self) -> int:
        """The port of the Bokeh pages (the real one once started with port 0)."""
        return self._bokeh_port if self._bokeh is not None else self._requested_ports[1]

    @property
    def url(self) -> str:
        """The address to open in a browser."""
        host = "localhost" if _is_loopback(self.host) else self.host
        return f"http://{host}:{self.bokeh_port}/"

    async def start(self) -> None:
        """Start listening on both ports; returns at once (the loop keeps serving)."""
        self.hub.load()
        sockets, self._bokeh_port = bind_sockets(self.host, self._requested_ports[1])
        try:
            hosts = [f"{h}:{self._bokeh_port}" for h in ("localhost", "127.0.0.1", self.host)]
            runs = {"hub": self.hub, "token": self.token}
            app = BokehTornado(
                {"/": Application(FunctionHandler(self._make_document))},
                extra_websocket_origins=create_hosts_allowlist(
                    sorted(set(hosts + self._origins)), self._bokeh_port
                ),
                extra_patterns=[
                    (r"/runs/?", _RunsHandler, runs),
                    (r"/runs/([A-Za-z0-9_][A-Za-z0-9_.\-]*)", _RunsHandler, runs),
                ],
            )
            http = HTTPServer(app)
            http.add_sockets(sockets)
            self._bokeh = BaseServer(IOLoop.current(), app, http)
            self._bokeh.start()
            self._ingest = await serve(
                self._handle,
                self.host,
                self._requested_ports[0],
                compression=None,
                max_size=self.limits.max_frame_bytes,
                process_request=self._check_request,
                process_response=self._advertise_limits,
                ping_interval=20,
                ping_timeout=60,
            )
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self.hub.write_behind()
        log.info(
            "streamvis: pages at %s, ingest at ws://%s:%d%s",
            self.url,
            self.host,
            self.ingest_port,
            INGEST_PATH,
        )

    async def stop(self) -> None:
        """Close both endpoints and every connection."""
        if self._ingest is not None:
            self._ingest.close()
            await self._ingest.wait_closed()
        if self._bokeh is not None:
            self._bokeh.stop(wait=False)
            self._bokeh.unlisten()
        self.hub.close()

    async def serve_forever(self) -> None:
        """Start, then serve until cancelled."""
        await self.start()
        try:
            await asyncio.Future()
        finally:
            await self.stop()

    # -- pages -------------------------------------------------------------------------------

    def _make_document(self, doc: Document) -> None:
        context: Any = doc.session_context
        args = context.request.arguments if context is not None else {}
        raw = args.get("run", [self.run_name.encode()])[0]
        run = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        view = DocumentView(doc, run, self.hub.runs.get, self.hub.run_names, self.update_interval)
        self.hub.attach(view)
        doc.on_session_destroyed(lambda _context: self.hub.detach(view))

    # -- ingest ------------------------------------------------------------------------------

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?")[0] != INGEST_PATH:
            return connection.respond(
                HTTPStatus.NOT_FOUND, f"streamvis ingest is at {INGEST_PATH}, not {request.path}\n"
            )
        offered = request.headers.get("Authorization", "")
        if self.token and not _token_matches(offered, self.token):
            log.warning("refused ingest from %s: wrong or missing token", connection.remote_address)
            return connection.respond(
                HTTPStatus.UNAUTHORIZED,
                "streamvis: wrong or missing token: "
                "pass Client(..., token=...) or set STREAMVIS_TOKEN\n",
            )
        return None

    def _advertise_limits(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> Response:
        response.headers[protocol.MAX_FRAME_HEADER] = str(self.limits.max_frame_bytes)
        return response

    async def _handle(self, ws: ServerConnection) -> None:
        peer = ws.remote_address
        log.info("client connected from %s", peer)
        yielded = time.monotonic()
        try:
            async for message in ws:
                for reply in self._receive(message, peer):
                    writing = self.hub.written() if "ack" in reply else None
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
            log.info("client from %s disconnected", peer)

    @staticmethod
    async def _send_after(
        ws: ServerConnection, written: asyncio.Future[list[str]], reply: dict[str, Any]
    ) -> None:
        failures = await written
        with contextlib.suppress(websockets.ConnectionClosed):  # the client resends it all
            for failure in failures:
                await ws.send(protocol.encode_reply({"err": failure}))
            await ws.send(protocol.encode_reply(reply))

    def _receive(self, message: bytes | str, peer: Any) -> list[dict[str, Any]]:
        """Decode and apply one message (one or more frames); return the replies to send."""
        if isinstance(message, str):
            return [{"err": "text message refused: streamvis frames are binary (streamvis.Client)"}]
        try:
            frames = protocol.decode_many(message, self.limits)
        except ProtocolError as exc:
            log.warning("malformed frame from %s: %s", peer, exc)
            return [{"err": f"malformed frame: {exc}"}]
        except Exception as exc:  # a decoder bug must not close the connection
            log.exception("decoding a frame from %s failed", peer)
            return [{"err": f"malformed frame: {exc!r}"}]
        replies: list[dict[str, Any]] = []
        ack = None
        for frame, data in frames:
            try:
                self.hub.apply(frame, data)
            except StreamvisError as exc:
                log.warning(
                    "run %r refused frame %d (%r): %s", frame.run, frame.seq, frame.name, exc
                )
                replies.append({"err": str(exc), "seq": frame.seq, "name": frame.name})
            except Exception as exc:
                log.exception("applying frame %d of run %r failed", frame.seq, frame.run)
                replies.append(
                    {"err": f"server failed applying the frame: {exc!r}", "seq": frame.seq}
                )
            else:
                if not frame.ack:
                    continue
            ack = frame.seq  # frames apply in order: this acknowledges all before it too
        if ack is not None:
            replies.append({"ack": ack})
        return replies


@contextlib.contextmanager
def serve_in_thread(**kwargs: Any) -> Iterator[StreamvisServer]:
    """Run a StreamvisServer on its own thread and loop, for synchronous code and tests."""
    started = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        box["loop"] = loop
        try:
            server = StreamvisServer(**kwargs)
            loop.run_until_complete(server.start())
            box["server"] = server
        except BaseException as exc:
            box["error"] = exc
            started.set()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(server.stop())
            loop.close()

    thread = threading.Thread(target=main, name="streamvis-server", daemon=True)
    thread.start()
    if not started.wait(30):
        raise StreamvisError("the streamvis server did not start within 30 s")
    if "error" in box:
        raise box["error"]
    try:
        yield box["server"]
    finally:
        box["loop"].call_soon_threadsafe(box["loop"].stop)
        thread.join(10)
