"""Who may use a server: other sites' pages, rebound host names, and tokens are kept out."""

from __future__ import annotations

import asyncio
import http.client
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from bokeh.util.token import get_token_payload
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from browser import Page, scaled
from streamvis import Client, ServerError
from streamvis._protocol import Frame, decode_reply, encode
from streamvis._server import StreamvisServer, serve_in_thread
from streamvis._specs import PlotSpec

LAYOUT = {"pts": (0, 0, 1, 1)}
EVIL = "http://evil.example"
TOKEN = "s3cret"
# The tooltip payload: were it parsed as HTML, the broken image would run its onerror.
PAYLOAD = '<img src=x onerror="window.pwned=1">'
POINTS = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]])  # the last one is in the middle
UPGRADE = {  # a websocket handshake's headers, for requests made with http.client
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}

# The text of every tooltip the page shows (Bokeh draws them in shadow roots), or null.
TOOLTIP_TEXTS = """(() => {
  const texts = [];
  const walk = (root) => { for (const el of root.querySelectorAll("*")) {
    if (el.shadowRoot) walk(el.shadowRoot);
    if (el.classList.contains("bk-tooltip-content")) texts.push(el.textContent);
  } };
  walk(document);
  return texts.length > 0 ? texts : null;
})()"""
# The tooltips of every hover tool of the page, and the figures' attributions.
HOVER_AND_ATTRIBUTION_JS = """
const models = [...Bokeh.documents[0].all_models];
return [models.filter((m) => m.type === "HoverTool").map((m) => m.tooltips),
        models.filter((m) => m.attribution != null).flatMap((m) => m.attribution)];
"""


class Answer(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: str


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> Answer:
    """Send one HTTP request to 127.0.0.1:port with exactly these headers (Host included)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers={"Host": f"127.0.0.1:{port}", **(headers or {})})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read().decode("utf-8", "replace"))
    finally:
        connection.close()


async def send_frames(
    port: int, *frames: Frame, name: str = "127.0.0.1", **connect: Any
) -> list[dict[str, object]]:
    """Send frames over a raw websocket to 127.0.0.1:port, as if to host ``name``; the replies."""
    uri = f"ws://{name}:{port}/ingest"
    async with ws_connect(
        uri, host="127.0.0.1", port=port, proxy=None, compression=None, **connect
    ) as ws:
        replies = []
        for frame in frames:
            await ws.send(encode(frame))
            replies.append(decode_reply(await asyncio.wait_for(ws.recv(), 10)))
        return replies


def refusal(port: int, frame: Frame, **connect: Any) -> int:
    """The HTTP status the ingest handshake was refused with (fails if it was accepted)."""
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(send_frames(port, frame, **connect))
    return refused.value.response.status_code


def clear_frame(run: str) -> Frame:
    """The frame ``client.clear()`` sends: it empties ``run``."""
    return Frame(op="clear", run=run, cid="intruder", seq=1, ack=True)


def hover_middle(page: Page, figure: str) -> None:
    """Move the mouse over the middle of a figure's data frame, and a little around it."""
    left, top, width, height = page.frame_rect(figure)
    for dx in (-2, 0, 2, 0):
        move = ActionBuilder(page.driver)
        x, y = int(left + width / 2 + dx), int(top + height / 2)
        move.pointer_action.move_to_location(x, y)  # type: ignore[no-untyped-call]
        move.perform()


@pytest.fixture
def guarded() -> Iterator[StreamvisServer]:
    """A server whose every endpoint asks for the token ``TOKEN``."""
    with serve_in_thread(ingest_port=0, bokeh_port=0, run_name="test", token=TOKEN) as srv:
        yield srv


def plotting(connect: Callable[..., Client]) -> Client:
    """A client whose run shows POINTS already."""
    client = connect()
    client.set_layout(LAYOUT)
    client.scatter("pts", POINTS, spatial_dim=1)
    assert client.flush(timeout=10)
    return client


# -- ingest: only streamvis clients, under this machine's names -----------------------------


def test_a_web_page_cannot_clear_a_run_through_the_ingest_port(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    plotting(connect)
    # Any page a browser shows may open this websocket; the browser then sends an Origin.
    assert refusal(server.ingest_port, clear_frame("test"), origin=EVIL) == 403
    assert server.hub.runs["test"].plots["pts"].data.view()["y"].tolist() == [0, 1, 0.5]


def test_the_ingest_port_answers_only_to_this_machines_names(server: StreamvisServer) -> None:
    port = server.ingest_port
    assert refusal(port, clear_frame("test"), name="evil.example") == 403
    sync = Frame(op="sync", run="named", cid="c", seq=1, ack=True)
    for name in ("localhost", "127.0.0.1"):
        assert asyncio.run(send_frames(port, sync, name=name)) == [{"ack": 1}]


# -- pages: no rebound host names, no writes from other sites --------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        pytest.param("GET", "/", {}, id="page"),
        pytest.param("GET", "/runs", {}, id="runs"),
        pytest.param("DELETE", "/runs/kept", {}, id="delete"),
        pytest.param("GET", "/ws", UPGRADE, id="websocket"),
    ],
)
def test_a_rebound_host_name_gets_nothing_from_the_page_port(
    server: StreamvisServer,
    connect: Callable[..., Client],
    method: str,
    path: str,
    headers: dict[str, str],
) -> None:
    client = connect("kept")
    client.set_layout(LAYOUT)
    assert client.flush(timeout=10)
    port = server.bokeh_port
    answer = request(port, method, path, {**headers, "Host": f"evil.example:{port}"})
    assert answer.status == 403
    assert "kept" in server.hub.runs
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", f"127.0.0.2:{port}"):
        assert request(port, "GET", "/runs", {"Host": host}).status == 200


def test_a_run_is_deleted_by_curl_but_not_from_another_sites_page(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    client = connect("kept")
    client.set_layout(LAYOUT)
    assert client.flush(timeout=10)
    port = server.bokeh_port
    assert request(port, "DELETE", "/runs/kept", {"Origin": EVIL}).status == 403
    assert "kept" in server.hub.runs
    assert request(port, "DELETE", "/runs/kept").status == 200  # no Origin: not a browser
    assert "kept" not in server.hub.runs


# -- figure keywords: what reaches a page is drawn, never run -------------------------------


def test_a_tooltips_template_is_refused_and_the_plot_keeps_its_data(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    client = plotting(connect)
    client.scatter("pts", np.ones((1, 2)), spatial_dim=1, fig_kwargs={"tooltips": PAYLOAD})
    assert client.flush(timeout=10)  # refused, and the client goes on
    plot = server.hub.runs["test"].plots["pts"]
    assert "tooltips" not in plot.fig_kwargs and len(plot.data) == 3
    assert any("tooltips" in str(error) for error in client.errors)
    strict = connect(on_error="raise")
    strict.set_layout(LAYOUT)
    strict.scatter("pts", POINTS, spatial_dim=1, fig_kwargs={"tooltips": PAYLOAD})
    with pytest.raises(ServerError, match="tooltips"):
        strict.flush(timeout=10)


def test_html_in_a_tooltip_is_shown_as_text(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    tooltips = [("v", f"{PAYLOAD}@y")]
    client.scatter("pts", POINTS, spatial_dim=1, fig_kwargs={"tooltips": tooltips})
    assert client.flush(timeout=10)
    page = browser()
    page.open(f"http://127.0.0.1:{server.bokeh_port}/")
    page.all_rendered()
    page.wait_for_column_length("pts", "x", 3)
    hover_middle(page, "pts:figure")
    shown = page.wait_for(TOOLTIP_TEXTS)
    assert any(PAYLOAD in text for text in shown), shown
    assert page.js("return typeof window.pwned") == "undefined"


def test_html_figure_keywords_in_an_older_servers_log_never_reach_the_page(
    tmp_path: Path, browser: Callable[[], Page]
) -> None:
    log = bytearray()  # what a streamvis 0.1 server, checking less, accepted and logged
    spec = PlotSpec("scatter", spatial_dim=1).to_wire()
    fig = {"tooltips": PAYLOAD, "attribution": [PAYLOAD]}
    for frame in (
        Frame(op="layout", run="old", cid="c", seq=1, opts={"cells": {"pts": [0, 0, 1, 1]}}),
        Frame(
            op="plot",
            run="old",
            cid="c",
            seq=2,
            name="pts",
            opts={**spec, "fig": fig},
            arrays=(POINTS,),
        ),
    ):
        data = encode(frame)
        log += struct.pack(">II", len(data), zlib.crc32(data)) + data
    (tmp_path / "old.log").write_bytes(log)  # migrated into the store at start-up
    with serve_in_thread(ingest_port=0, bokeh_port=0, run_name="old", data_dir=tmp_path) as srv:
        page = browser()
        page.open(f"http://127.0.0.1:{srv.bokeh_port}/")
        page.all_rendered()
        assert page.wait_for_column_length("pts", "y", 3) == [0, 1, 0.5]  # the data is shown
        hover_middle(page, "pts:figure")
        tooltips, attribution = page.js(HOVER_AND_ATTRIBUTION_JS)
        assert not any(PAYLOAD in str(t) for t in tooltips) and attribution == []
        assert page.js("return typeof window.pwned") == "undefined"


# -- tokens: every endpoint asks; a browser keeps it in an HttpOnly cookie ------------------


def test_every_page_endpoint_asks_for_the_token(guarded: StreamvisServer) -> None:
    port = guarded.bokeh_port
    paths = ["/", "/?run=x", "/runs", "/runs.json", "/static/js/lib/models/index.js"]
    for path in [*paths, "/ws"]:
        assert request(port, "GET", path, UPGRADE if path == "/ws" else {}).status == 401, path
        wrong = {"Authorization": "Bearer nope"}
        assert request(port, "GET", path, wrong).status == 401, path
    for path in paths[:4]:  # scripts present it as a bearer token
        assert request(port, "GET", path, {"Authorization": f"Bearer {TOKEN}"}).status == 200
    # BokehJS's bundles as published (a page in a notebook's frame gets no cookie): only
    # GET and HEAD, only them.
    assert request(port, "GET", "/static/js/bokeh.min.js").status == 200
    assert request(port, "GET", "/static/js/bokeh-widgets.min.js").status == 200
    assert request(port, "POST", "/static/js/bokeh.min.js").status in (401, 403, 405)


def test_a_token_in_the_address_becomes_an_httponly_cookie(guarded: StreamvisServer) -> None:
    port = guarded.bokeh_port
    answer = request(port, "GET", f"/?token={TOKEN}&run=x")
    assert answer.status == 302 and answer.headers["Location"] == "/?run=x"
    set_cookie = answer.headers["Set-Cookie"]
    assert TOKEN not in set_cookie  # the cookie proves the token without holding it
    cookie = SimpleCookie(set_cookie)[f"streamvis_token_{port}"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    with_cookie = {"Cookie": f"{cookie.key}={cookie.value}"}
    assert request(port, "GET", "/?run=x", with_cookie).status == 200
    assert request(port, "GET", "/runs", with_cookie).status == 200
    assert request(port, "GET", "/?token=wrong&run=x").status == 401
    framed = {"Sec-Fetch-Dest": "iframe"}  # a notebook's frame, which may get no cookie:
    assert request(port, "GET", f"/?token={TOKEN}&run=x", framed).status == 200  # as it is
    assert request(port, "GET", "/?token=wrong&run=x", framed).status == 401
    assert guarded.url == f"http://localhost:{port}/?token={TOKEN}"  # what the server prints


def test_a_page_never_holds_the_token_it_was_opened_with(guarded: StreamvisServer) -> None:
    port = guarded.bokeh_port

    def session_of_page(proof: dict[str, str]) -> list[Any]:
        """What Bokeh signed into the page of what its session knows of the request."""
        page = request(port, "GET", "/", {"Cookie": "other=1", **proof})
        sessions = [get_token_payload(token) for token in re.findall(r"eyJ[\w-]+", page.body)]
        assert page.status == 200 and sessions
        return sessions

    for session in session_of_page({"Authorization": f"Bearer {TOKEN}"}):
        assert session["headers"] == session["cookies"] == {}
    cookie = request(port, "GET", f"/?token={TOKEN}").headers["Set-Cookie"].split(";")[0]
    for session in session_of_page({"Cookie": f"{cookie}; other=1"}):
        assert session["headers"] == session["cookies"] == {}


def test_a_browser_opened_with_the_token_shows_the_run_and_hides_the_token(
    guarded: StreamvisServer, browser: Callable[[], Page]
) -> None:
    with Client(f"127.0.0.1:{guarded.ingest_port}", "t", token=TOKEN, exit_timeout=5) as client:
        client.set_layout(LAYOUT)
        client.scatter("pts", POINTS, spatial_dim=1)
        assert client.flush(timeout=10)
    page = browser()
    page.open(f"http://localhost:{guarded.bokeh_port}/?run=t")  # without it: the login page
    assert "token needed" in page.driver.title
    assert page.js("return typeof Bokeh") == "undefined"
    page.open(f"{guarded.url}&run=t")  # the address the server printed, and a run
    page.all_rendered()
    assert page.wait_for_column_length("pts", "y", 3) == [0, 1, 0.5]
    assert "token=" not in page.driver.current_url
    assert "streamvis_token" not in page.js("return document.cookie")  # HttpOnly


def test_a_client_with_a_wrong_token_neither_blocks_nor_buffers(
    guarded: StreamvisServer,
) -> None:
    address = f"127.0.0.1:{guarded.ingest_port}"
    client = Client(address, "t", token="wrong", max_buffer_bytes=2**20, exit_timeout=0.5)
    chunk = np.zeros((2**14, 2))  # 256 KiB: four calls fill the buffer
    client.set_layout(LAYOUT)

    def train() -> None:
        for _ in range(1000):
            client.scatter("pts", chunk, spatial_dim=1, append=True)

    training = threading.Thread(target=train, daemon=True)  # if it hangs, pytest still ends
    training.start()
    training.join(20)
    assert not training.is_alive(), "the calls block while the server refuses the client"
    started = time.monotonic()
    assert client.flush(timeout=10) is False
    assert time.monotonic() - started < scaled(2)  # at once: the refusal is known
    [error] = client.errors
    assert "HTTP 401" in str(error) and "token" in str(error)
    client.close(timeout=1)
