"""A real server and real clients over loopback: delivery, acknowledgement, errors, isolation."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidStatus

from streamvis import Client, FrameTooLarge, ServerError, StreamvisError
from streamvis._errors import StoreError
from streamvis._protocol import Frame, Limits, decode_reply, encode
from streamvis._runstore import RunStore
from streamvis._server import StreamvisServer, serve_in_thread
from test_durability import free_port

LAYOUT = {"loss": (0, 0, 1, 1), "pts": (0, 1, 1, 1)}


def test_everything_sent_is_applied_after_flush(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    for step in range(500):
        client.tandem_lines("loss", step, np.full(3, step, np.float32))
    client.scatter("pts", np.arange(10.0).reshape(5, 2), spatial_dim=1)
    assert client.flush(timeout=10)
    run = server.hub.runs["test"]
    assert run.plots["loss"].data.view()["x"].tolist() == list(range(500))
    assert run.plots["pts"].data.view()["y"].tolist() == [1, 3, 5, 7, 9]


def test_server_rejection_reaches_the_caller_and_keeps_the_plot(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    client = connect(on_error="raise")
    client.set_layout(LAYOUT)
    client.scatter("pts", np.zeros((4, 2)))
    assert client.flush(timeout=10)
    client.scatter("pts", np.ones((2, 2)), fig_kwargs={"x_axis_lable": "step"})
    with pytest.raises(ServerError, match=r"'x_axis_lable'.*x_axis_label"):
        client.flush(timeout=10)
    assert len(server.hub.runs["test"].plots["pts"].data) == 4
    client.scatter("pts", np.ones((3, 2)), fig_kwargs={"x_axis_label": "step"})
    assert client.flush(timeout=10)
    assert server.hub.runs["test"].plots["pts"].fig_kwargs == {"x_axis_label": "step"}


def test_two_runs_stay_apart_and_are_listed(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    first, second = connect("alpha"), connect("beta")
    for client, n in ((first, 2), (second, 5)):
        client.set_layout(LAYOUT)
        client.scatter("pts", np.zeros((n, 2)))
        assert client.flush(timeout=10)
    assert server.hub.run_names() == ["alpha", "beta"]
    assert len(server.hub.runs["beta"].plots["pts"].data) == 5


def test_runs_json_lists_each_runs_plots_steps_times_and_whether_it_is_live(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    before = time.time()
    first, second = connect("alpha"), connect("beta")
    for client, step in ((first, 3), (second, 7)):
        client.set_layout(LAYOUT)
        client.scatter("pts", np.zeros((2, 2)), step=step)
        assert client.flush(timeout=10)
    second.close()
    url = f"http://127.0.0.1:{server.bokeh_port}/runs.json"

    def listed() -> list[dict[str, Any]]:
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert reply.headers["Content-Type"].startswith("application/json")
            return list(json.load(reply))

    runs = listed()
    for _ in range(100):  # the closed client's connection goes away soon after
        if not runs[1]["live"]:
            break
        time.sleep(0.05)
        runs = listed()
    alpha, beta = runs
    assert (alpha["run"], alpha["plots"], alpha["steps"], alpha["live"]) == (
        "alpha",
        ["pts"],
        [3, 3],
        True,
    )
    assert (beta["run"], beta["steps"], beta["live"]) == ("beta", [7, 7], False)
    assert before <= alpha["first"] <= alpha["last"] <= time.time()


async def send_raw(port: int, *messages: bytes | str) -> list[dict[str, object]]:
    async with ws_connect(f"ws://127.0.0.1:{port}/ingest", compression=None) as ws:
        replies = []
        for message in messages:
            await ws.send(message)
            replies.append(decode_reply(await asyncio.wait_for(ws.recv(), 10)))
        return replies


def test_malformed_frames_get_an_error_and_the_connection_stays_usable(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    good = encode(
        Frame(op="layout", run="raw", cid="x", seq=1, opts={"cells": {"p": [0, 0, 1, 1]}}, ack=True)
    )
    replies = asyncio.run(send_raw(server.ingest_port, b"\x00\x00\x00\x05junk!", "text", good))
    assert "not valid msgpack" in str(replies[0]["err"])
    assert "frames are binary" in str(replies[1]["err"])
    assert replies[2] == {"ack": 1}
    client = connect()  # other clients are unaffected
    client.set_layout(LAYOUT)
    assert client.flush(timeout=10)


def test_unknown_ingest_path_is_refused(server: StreamvisServer) -> None:
    async def attempt() -> None:
        async with ws_connect(f"ws://127.0.0.1:{server.ingest_port}/other"):
            pass

    with pytest.raises(InvalidStatus, match="404"):
        asyncio.run(attempt())


def test_token_is_required_when_set() -> None:
    with serve_in_thread(ingest_port=0, bokeh_port=0, token="s3cret") as srv:
        address = f"127.0.0.1:{srv.ingest_port}"
        bad = Client(address, "t", token="wrong", exit_timeout=0.2, on_error="raise")
        with bad, pytest.raises(ServerError, match=r"HTTP 401.*token"):  # the refusal reaches
            bad.set_layout(LAYOUT)  # the caller: at this call if it came first, else at flush
            bad.flush(timeout=10)
        with Client(address, "t", token="s3cret", exit_timeout=2) as good:
            good.set_layout(LAYOUT)
            assert good.flush(timeout=10)
        assert "t" in srv.hub.runs


def test_binding_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(StreamvisError, match="set a token"):
        StreamvisServer(host="0.0.0.0")


def test_client_started_before_the_server_delivers_once_it_is_up() -> None:
    import socket

    with socket.socket() as sock:  # find a free port, then start the server on it later
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Client(f"127.0.0.1:{port}", "late", exit_timeout=2)
    client.set_layout(LAYOUT)
    for step in range(50):
        client.tandem_lines("loss", step, np.zeros(2))
    with serve_in_thread(ingest_port=port, bokeh_port=0) as srv:
        assert client.flush(timeout=20)
        assert len(srv.hub.runs["late"].plots["loss"].data) == 50
    client.close(timeout=0.1)


def test_msgpack_header_is_what_the_docs_say() -> None:
    data = encode(Frame(op="sync", run="r", cid="c", seq=3, ack=True))
    header = msgpack.unpackb(data[4 : 4 + int.from_bytes(data[:4], "big")])
    assert header == {"v": 1, "op": "sync", "run": "r", "cid": "c", "seq": 3, "ack": True}


def test_frames_over_the_servers_limit_are_refused_and_the_rest_delivered() -> None:
    port = free_port()
    with Client(f"127.0.0.1:{port}", "big", exit_timeout=2, on_error="raise") as client:
        client.set_layout(LAYOUT)  # queued before the server exists: its limit is not known
        client.scatter("pts", np.zeros((1, 2)), append=True)
        client.scatter("pts", np.zeros((20_000, 2)), append=True)  # 320 kB
        client.scatter("pts", np.ones((3, 2)), append=True)
        limits = Limits(max_frame_bytes=100_000)
        with serve_in_thread(ingest_port=port, bokeh_port=0, limits=limits) as srv:
            with pytest.raises(ServerError, match=r"over the server's limit of 100000.*max_frame"):
                client.flush(timeout=10)  # the sender refused it, and delivered the rest
            assert client.flush(timeout=10)
            assert srv.hub.runs["big"].plots["pts"].data.view()["x"].tolist() == [0, 1, 1, 1]
            with pytest.raises(FrameTooLarge, match=r"limit of 100000 bytes.*--max_frame_mb"):
                client.scatter("pts", np.zeros((20_000, 2)), append=True)  # now at the call


def test_arrays_over_the_clients_frame_limit_raise_at_the_call() -> None:
    with Client("127.0.0.1:9", "r", max_frame_bytes=100_000, exit_timeout=0.1) as client:
        client.set_layout(LAYOUT)
        with pytest.raises(FrameTooLarge, match="'pts': 160000 bytes of arrays exceed"):
            client.scatter("pts", np.zeros((10_000, 2)))


def test_a_run_is_deleted_over_http_with_its_log(tmp_path: Path) -> None:
    with serve_in_thread(ingest_port=0, bokeh_port=0, data_dir=tmp_path) as srv:
        with Client(f"127.0.0.1:{srv.ingest_port}", "gone", exit_timeout=2) as client:
            client.set_layout(LAYOUT)
            assert client.flush(timeout=10)
        assert (tmp_path / "runs" / "gone.sqlite").exists()
        url = f"http://127.0.0.1:{srv.bokeh_port}/runs/gone"
        with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10) as r:
            assert b"deleted run 'gone'" in r.read()
        assert "gone" not in srv.hub.runs and not (tmp_path / "runs" / "gone.sqlite").exists()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10)


def test_the_server_acknowledges_and_shows_frames_once_they_are_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = threading.Event()  # the writer thread's disk writes nothing until the test lets it

    def slow_append(store: RunStore, frames: Any, ids: Any = None, rows: Any = None) -> None:
        if threading.current_thread().name == "streamvis-log":
            assert disk.wait(30), "the test never let the disk write"
        real_append(store, frames, ids, rows)

    real_append = RunStore.append
    monkeypatch.setattr(RunStore, "append", slow_append)
    with (
        serve_in_thread(ingest_port=0, bokeh_port=0, data_dir=tmp_path) as srv,
        Client(f"127.0.0.1:{srv.ingest_port}", "kept", exit_timeout=5) as client,
    ):
        client.set_layout(LAYOUT)
        for i in range(8):  # 80 kB frames: large enough to go to the writer thread
            client.scatter("pts", np.full((10_000, 2), i, np.float32), append=True)
        assert not client.flush(timeout=0.5)  # not yet stored: not acknowledged...
        assert "pts" not in srv.hub.runs["kept"].plots  # ...nor shown
        disk.set()
        assert client.flush(timeout=10)
        assert len(srv.hub.runs["kept"].plots["pts"].data) == 80_000
        stored = srv.hub.store.open("kept").frames("pts")  # type: ignore[union-attr]
        assert [s.frame.arrays[0][0, 0] for s in stored] == list(range(8))


def test_frames_the_server_cannot_store_wait_in_the_client_until_space_frees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = threading.Event()

    def full_disk(store: RunStore, frames: Any, ids: Any = None, rows: Any = None) -> None:
        if not space.is_set() and any(f.op == "plot" for f, _ in frames):
            raise StoreError("cannot store frames: database or disk is full")
        real_append(store, frames, ids, rows)

    real_append = RunStore.append
    monkeypatch.setattr(RunStore, "append", full_disk)
    with (
        serve_in_thread(ingest_port=0, bokeh_port=0, data_dir=tmp_path) as srv,
        Client(f"127.0.0.1:{srv.ingest_port}", "full", exit_timeout=5) as client,
    ):
        client.set_layout(LAYOUT)
        for step in range(100):  # small frames, stored on the loop, and large ones
            client.tandem_lines("loss", step, np.zeros(2))
            if step % 10 == 0:
                client.scatter("pts", np.full((10_000, 2), step, np.float32), append=True)
        assert not client.flush(timeout=1)  # no call raised; nothing acknowledged
        (error,) = client.errors
        assert "could not store run 'full'" in str(error) and "disk is full" in str(error)
        assert "loss" not in srv.hub.runs["full"].plots  # nothing shown that is not stored
        space.set()
        assert client.flush(timeout=30)  # resent after a pause, then everything arrives
        run = srv.hub.runs["full"]
        assert run.plots["loss"].data.view()["x"].tolist() == list(range(100))
        assert len(run.plots["pts"].data) == 100_000  # each once


def test_deleting_a_run_needs_the_token_when_one_is_set() -> None:
    with serve_in_thread(ingest_port=0, bokeh_port=0, token="s3cret") as srv:
        url = f"http://127.0.0.1:{srv.bokeh_port}/runs/any"
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10)


def test_a_peer_that_is_not_a_streamvis_server_is_reported_not_fatal() -> None:
    async def impostor(ws: ServerConnection) -> None:
        await ws.send("hello")
        await ws.wait_closed()

    async def scenario() -> None:
        async with serve(impostor, "127.0.0.1", 0) as other:
            port = next(iter(other.sockets)).getsockname()[1]
            client = Client(f"127.0.0.1:{port}", "r", exit_timeout=0.1, on_error="raise")
            with pytest.raises(ServerError, match="not a streamvis server"):
                await asyncio.to_thread(client.flush, 10)
            assert client._transport._thread.is_alive()
            await asyncio.to_thread(client.close, 0.1)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_small_and_large_frames_arrive_in_the_order_they_were_sent(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    for step in range(200):  # small appends between large replaces, in one batch
        client.tandem_lines("loss", step, np.zeros(2))
        client.scatter("pts", np.full((20_000, 2), step, np.float32))
    assert client.flush(timeout=30)
    run = server.hub.runs["test"]
    assert run.plots["loss"].data.view()["x"].tolist() == list(range(200))
    assert run.plots["pts"].data.view()["x"][0] == 199


def test_large_frames_are_delivered_from_buffers_reused_once_acknowledged(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    for step in range(3):
        client.scatter("pts", np.full((20_000, 2), step, np.float32), append=True)
        assert client.flush(timeout=30)
    (free,) = client._transport.pool._free.values()  # acknowledged buffers went back
    before = list(free)
    client.scatter("pts", np.full((20_000, 2), 3, np.float32), append=True)
    assert client.flush(timeout=30)
    assert {id(b) for b in free} == {id(b) for b in before}  # one was reused, none is new
    xs = server.hub.runs["test"].plots["pts"].data.view()["x"]
    assert xs.tolist() == [float(step) for step in range(4) for _ in range(20_000)]


def test_a_plot_gets_at_most_one_replace_per_interval_and_always_the_last(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    client = connect(replace_interval=0.1)
    client.set_layout({"pts": (0, 0, 1, 1), "other": (0, 1, 1, 1)})
    start = time.monotonic()
    for n in range(1, 51):  # a training loop at 200 steps/s: the sender keeps up with it
        client.scatter("pts", np.full((n, 2), n, np.float32))
        client.scatter("other", np.full((1, 2), n, np.float32), append=True)
        time.sleep(0.005)
    assert client.flush(timeout=10)
    run = server.hub.runs["test"]
    replaces = run.plots["pts"].generation + 1
    assert replaces <= 2 + (time.monotonic() - start) / 0.1  # the first, then one per interval
    assert run.plots["pts"].data.view()["x"].tolist() == [50] * 50
    assert run.plots["other"].data.view()["x"].tolist() == list(range(1, 51))


def test_a_held_replace_goes_before_the_next_call_to_its_plot(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    client = connect(replace_interval=60)
    client.set_layout({"pts": (0, 0, 1, 1)})
    client.scatter("pts", np.zeros((1, 2)))
    assert client.flush(timeout=10)  # sent: the next replace is held for a minute...
    client.scatter("pts", np.ones((2, 2)))
    client.scatter("pts", np.full((1, 2), 2.0), append=True)  # ...but not past this append
    assert client.flush(timeout=10)
    assert server.hub.runs["test"].plots["pts"].data.view()["x"].tolist() == [1, 1, 2]
