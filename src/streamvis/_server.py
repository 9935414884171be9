"""The streamvis server: Bokeh pages and the websocket ingest endpoint on one asyncio loop.

Frames arrive on ``ws://HOST:INGEST_PORT/ingest`` (:mod:`ingest`), are decoded
(:mod:`protocol`), applied to the run state (:mod:`hub`, :mod:`state`), acknowledged, and
pushed to every open page of that run (:mod:`session`); the page port's requests pass the
same guard first (:mod:`web`, :mod:`guard`). ``StreamvisServer`` is embeddable: ``await
start()`` / ``await stop()`` on a running loop, port 0 for an ephemeral port;
``serve_in_thread`` and ``start_in_thread`` for synchronous code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.document import Document
from bokeh.server.server import BaseServer
from bokeh.server.util import bind_sockets, create_hosts_allowlist
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from websockets.asyncio.server import Server, serve

from . import _protocol as protocol
from ._errors import ArgumentError, StreamvisError
from ._guard import Guard, is_loopback
from ._history import Stored
from ._hub import Hub
from ._ingest import INGEST_PATH, Ingest
from ._page.session import DocumentView
from ._page.viewed import Viewed
from ._runstore import DEFAULT_BUDGET
from ._store import Store
from ._web import GuardedTornado, RunsHandler

__all__ = ["INGEST_PATH", "StreamvisServer", "serve_in_thread", "start_in_thread"]

log = logging.getLogger("streamvis.server")

_RESERVED_FDS = 64  # file descriptors kept for pages, logs and listening sockets
_PAGE_IDLE_TIMEOUT = 120  # seconds an idle HTTP connection to the page port stays open


def _connection_limit() -> int:
    """How many ingest connections fit the process's file limit, pages and logs aside."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(4, min(1024, (soft - _RESERVED_FDS) // 2))


class StreamvisServer:
    """Serves Bokeh pages on ``bokeh_port`` and takes client frames on ``ingest_port``.

    ``run_name`` is the run shown at ``/``; any run is shown at ``/?run=NAME``. Binding a
    non-loopback ``host`` requires a ``token``; once set, every endpoint asks for it.
    ``allow_websocket_origin`` ("HOST[:PORT]") names more hosts the pages may be opened as.
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
        max_connections: int | None = None,
        max_run_bytes: int = DEFAULT_BUDGET,
    ) -> None:
        if not is_loopback(host) and not token:
            raise ArgumentError(
                f"binding {host!r} exposes the server beyond this machine: "
                "set a token (STREAMVIS_TOKEN or --token_file), or bind 127.0.0.1"
            )
        self.host, self.run_name, self.token = host, run_name, token or None
        self.limits, self.update_interval = limits, update_interval
        store = Store(Path(data_dir), max_run_bytes) if data_dir is not None else None
        self.hub = Hub(store)
        self._requested_ports = (ingest_port, bokeh_port)
        self._origins = list(allow_websocket_origin)
        self.guard = Guard(host, self.token, self._origins)
        limit = max_connections if max_connections is not None else _connection_limit()
        self._ingestion = Ingest(self.hub, self.guard, limits, limit)
        self._bokeh: BaseServer | None = None
        self._ingest: Server | None = None
        self._stopped = False
        self._loading: asyncio.Future[None] | None = None  # reading the stored runs

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
        """The address to open in a browser (with the token, if one is set)."""
        host = "localhost" if is_loopback(self.host) else self.host
        token = f"?token={urllib.parse.quote(self.token, safe='')}" if self.token else ""
        return f"http://{host}:{self.bokeh_port}/{token}"

    async def start(self, *, wait_loaded: bool = False) -> None:
        """Start listening on both ports; returns at once (the loop keeps serving) while the
        stored runs are read on a thread; ``wait_loaded`` returns once they are."""
        self.hub.begin_loading()
        sockets, self._bokeh_port = bind_sockets(self.host, self._requested_ports[1])
        try:
            hosts = [f"{h}:{self._bokeh_port}" for h in ("localhost", "127.0.0.1", self.host)]
            runs = {"hub": self.hub, "live": self._ingestion.is_live}
            app = GuardedTornado(
                {"/": Application(FunctionHandler(self._make_document))},
                guard=self.guard,
                port=self._bokeh_port,
                ingest_port=lambda: self.ingest_port,
                extra_websocket_origins=create_hosts_allowlist(
                    sorted(set(hosts + self._origins)), self._bokeh_port
                ),
                extra_patterns=[
                    (r"/runs/?", RunsHandler, runs),
                    (r"/runs(\.json)", RunsHandler, runs),
                    (r"/runs/(.*)", RunsHandler, runs),
                ],
                include_headers=[],  # a page's session token carries neither the request's
                include_cookies=[],  # headers nor its cookies (the token's among them)
            )
            http = HTTPServer(app, idle_connection_timeout=_PAGE_IDLE_TIMEOUT)
            http.add_sockets(sockets)
            self._bokeh = BaseServer(IOLoop.current(), app, http)
            self._bokeh.start()
            ingestion = self._ingestion
            self._ingest = await serve(
                ingestion.handle,
                self.host,
                self._requested_ports[0],
                compression=None,
                max_size=self.limits.max_frame_bytes,
                process_request=ingestion.check_request,
                process_response=ingestion.advertise_limits,
                open_timeout=10,  # a connection that never completes its handshake is closed
                ping_interval=20,
                ping_timeout=60,
            )
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self.hub.write_behind()
        self._loading = asyncio.ensure_future(self.hub.load_behind())
        if wait_loaded:
            await asyncio.shield(self._loading)
        log.info(
            "streamvis: pages at http://%s:%d/, ingest at ws://%s:%d%s",
            self.host,
            self.bokeh_port,
            self.host,
            self.ingest_port,
            INGEST_PATH,
        )

    async def stop(self) -> None:
        """Close both endpoints and every connection, and finish writing the logs."""
        if self._stopped:
            return
        self._stopped = True
        if self._loading is not None:  # its thread reads the stores: let it finish first
            with contextlib.suppress(Exception):
                await self._loading
        if self._ingest is not None:
            self._ingest.close()
            await self._ingest.wait_closed()
        if self._bokeh is not None:
            self._bokeh.stop(wait=False)
            self._bokeh.unlisten()
        self.hub.close()

    async def serve_forever(self) -> None:
        """Start (unless started), then serve until cancelled; stop cleanly either way."""
        try:
            if self._bokeh is None:
                await self.start()
            await asyncio.Future()
        finally:
            await self.stop()

    # -- pages -------------------------------------------------------------------------------

    def _reading(self) -> bool:
        """Whether the stored runs are still being read."""
        return self.hub.loaded is not None and not self.hub.loaded.done()

    def _history(self, run: str, plot: str, at: int | float) -> Stored | None:
        """A plot's frame at step ``at`` (an int) or time ``at`` (a float, seconds since the
        epoch), from the store (on the drawing thread)."""
        if self.hub.store is None:
            return None
        stored = self.hub.store.open(run)
        return (
            stored.latest_at_step(plot, at) if type(at) is int else stored.latest_at_time(plot, at)
        )

    def _make_document(self, doc: Document) -> None:
        context: Any = doc.session_context
        args = context.request.arguments if context is not None else {}
        view = DocumentView(
            doc,
            Viewed.from_query(args, self.run_name),
            self.hub.runs.get,
            self.hub.run_names,
            self.update_interval,
            self._reading,
            self.hub.keep_image,
            self._history if self.hub.store is not None else None,
        )
        self.hub.attach(view)
        doc.on_session_destroyed(lambda _context: self.hub.detach(view))


def start_in_thread(
    *, wait_loaded: bool = True, **kwargs: Any
) -> tuple[StreamvisServer, Callable[[], None]]:
    """Start a StreamvisServer on its own thread and loop (once its stored runs are read,
    unless ``wait_loaded`` is False): the server, and what stops it (stored, closed)."""
    started = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        box["loop"] = loop
        try:
            server = StreamvisServer(**kwargs)
            loop.run_until_complete(server.start(wait_loaded=wait_loaded))
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

    def stop() -> None:
        if thread.is_alive():
            box["loop"].call_soon_threadsafe(box["loop"].stop)
            thread.join(10)

    return box["server"], stop


@contextlib.contextmanager
def serve_in_thread(*, wait_loaded: bool = True, **kwargs: Any) -> Iterator[StreamvisServer]:
    """A StreamvisServer on its own thread and loop while the block runs, for synchronous
    code and tests (:func:`start_in_thread`)."""
    server, stop = start_in_thread(wait_loaded=wait_loaded, **kwargs)
    try:
        yield server
    finally:
        stop()
