"""A training loop goes on through what others do to its run: deletes, clears, new layouts."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from browser import Page, scaled
from streamvis import Client
from streamvis._errors import StoreError
from streamvis._guard import Guard
from streamvis._hub import Hub
from streamvis._ingest import Ingest
from streamvis._protocol import DEFAULT_LIMITS, UNPLACED, UNSTORED, Frame, encode
from streamvis._runstore import RunStore
from streamvis._server import StreamvisServer, serve_in_thread
from streamvis._specs import PlotSpec
from streamvis._store import Store
from test_durability import free_port

LAYOUT = {"loss": (0, 0, 1, 1), "pts": (0, 1, 1, 1)}


def delete(server: StreamvisServer, run: str) -> int:
    """``DELETE /runs/RUN`` as curl would send it; the HTTP status."""
    url = f"http://127.0.0.1:{server.bokeh_port}/runs/{run}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def steps(server: StreamvisServer, run: str = "test") -> list[float]:
    """The x of every point of the run's loss plot, in order."""
    return list(server.hub.runs[run].plots["loss"].data.view()["x"].tolist())


def test_a_failed_write_is_told_to_its_own_run_never_to_another_runs_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_for_one_run(store: RunStore, frames: Any, ids: Any = None, rows: Any = None) -> None:
        if store.path.stem == "broken":
            raise StoreError("cannot store frames of run 'broken': disk I/O error")
        real_append(store, frames, ids, rows)

    real_append = RunStore.append
    monkeypatch.setattr(RunStore, "append", broken_for_one_run)
    with serve_in_thread(ingest_port=0, bokeh_port=0, data_dir=tmp_path) as srv:
        address = f"127.0.0.1:{srv.ingest_port}"
        bystander = Client(address, "bystander", on_error="raise")
        broken = Client(address, "broken", exit_timeout=0.5)
        for client in (bystander, broken):
            client.set_layout(LAYOUT)
        for step in range(100):  # both runs' frames interleave on the one writer thread
            broken.tandem_lines("loss", step, np.zeros(2))
            bystander.tandem_lines("loss", step, np.zeros(2))
        assert bystander.flush(timeout=10)  # raises ServerError if the failure reached it
        assert steps(srv, "bystander") == list(range(100))
        assert not broken.flush(timeout=1) and "disk I/O error" in str(broken.errors)
        assert delete(srv, "x" * 300) == 404  # a name too long is refused before the disk
        bystander.close(), broken.close()


def test_a_client_goes_on_through_a_delete_of_its_run_and_restores_its_layout(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    client = connect(on_error="raise")  # a remote error would raise here
    client.set_layout(LAYOUT)
    client.scatter("pts", np.zeros((3, 2)), fig_kwargs={"title": "points"})
    for step in range(100):
        client.tandem_lines("loss", step, np.zeros(2), fig_kwargs={"title": "loss"})
    assert client.flush(timeout=10)
    assert delete(server, "test") == 200
    for step in range(100, 200):
        client.tandem_lines("loss", step, np.full(2, step))
    client.scatter("pts", np.ones((4, 2)))
    assert client.flush(timeout=10)
    run = server.hub.runs["test"]
    assert run.cells is not None and set(run.cells) == set(LAYOUT)
    assert steps(server) == list(range(100, 200))  # every point sent after, once
    assert run.plots["loss"].fig_kwargs == {"title": "loss"}
    assert run.plots["pts"].fig_kwargs == {"title": "points"}
    assert not client.errors


def test_a_client_goes_on_through_another_clients_clear_and_layout(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    client, other = connect(on_error="raise"), connect()
    client.set_layout(LAYOUT)
    for step in range(50):
        client.tandem_lines("loss", step, np.zeros(2))
    assert client.flush(timeout=10)
    other.clear()
    assert other.flush(timeout=10)
    for step in range(50, 100):  # in flight, or sent after the clear: all arrive
        client.tandem_lines("loss", step, np.zeros(2))
    assert client.flush(timeout=10)
    assert steps(server) == list(range(50, 100))
    other.set_layout({"elsewhere": (0, 0, 1, 1)})  # a layout without this client's plots
    assert other.flush(timeout=10)
    for step in range(100, 150):
        client.tandem_lines("loss", step, np.zeros(2))
    assert client.flush(timeout=10)
    assert steps(server)[-50:] == list(range(100, 150))
    assert len(set(steps(server))) == len(steps(server))  # nothing applied twice


def test_points_sent_while_the_run_is_deleted_repeatedly_arrive_once(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    client = connect(on_error="raise")
    client.set_layout(LAYOUT)
    sent = 0
    for _ in range(5):  # deletes between bursts that are still in flight
        for _ in range(200):
            client.tandem_lines("loss", sent, np.zeros(2))
            sent += 1
        assert delete(server, "test") in (200, 404)  # 404: none of the burst arrived yet
    for _ in range(10):
        client.tandem_lines("loss", sent, np.zeros(2))
        sent += 1
    assert client.flush(timeout=20)
    xs = steps(server)
    assert xs == list(range(int(xs[0]), sent))  # a suffix of the steps, each once
    assert sent - 10 >= xs[0]


def test_a_page_shows_the_points_sent_after_its_run_was_deleted(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    client.scatter("pts", np.zeros((2, 2)), append=True)
    assert client.flush(timeout=10)
    page = browser()
    page.open(f"http://127.0.0.1:{server.bokeh_port}/")
    page.wait_for_column_length("pts", "x", 2)
    assert delete(server, "test") == 200
    client.scatter("pts", np.full((3, 2), 7.0), append=True)
    assert client.flush(timeout=10)
    assert page.wait_for_column_length("pts", "x", 3) == [7.0, 7.0, 7.0]


async def test_a_frame_refused_for_its_place_is_not_taken_when_resent_after_a_reconnect() -> None:
    hub = Hub(None)
    ingest = Ingest(hub, Guard("127.0.0.1", None), DEFAULT_LIMITS, max_connections=8)
    first, second = object(), object()
    ingest._restorers |= {first, second}  # two connections of a client that can restore
    spec = PlotSpec("scatter", append=True).to_wire()
    points = encode(Frame("plot", "r", "c", 2, "pts", spec, (np.ones((1, 2)),), ack=True))
    (refused,) = await ingest.receive(points, None, first)
    assert refused["code"] == UNPLACED and refused["seq"] == 2
    (again,) = await ingest.receive(points, None, second)  # the answer was lost: resent as is
    assert again["code"] == UNPLACED  # refused again, not taken as a duplicate and acknowledged
    layout = Frame("layout", "r", "c", 3, opts={"cells": {"pts": [0, 0, 1, 1]}}, restore=True)
    moved = encode(Frame("plot", "r", "c", 4, "pts", spec, (np.ones((1, 2)),), ack=True))
    assert await ingest.receive(encode(layout) + moved, None, second) == [{"ack": 4}]
    assert len(hub.runs["r"].plots["pts"].data) == 1


def test_a_client_refused_at_first_lays_out_again_once_it_is_taken(tmp_path: Path) -> None:
    async def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(HTTPStatus.UNAUTHORIZED, "wrong or missing token\n")

    async def refused_for_a_while(port: int) -> None:
        async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", port, process_request=refuse):
            await asyncio.sleep(0.5)

    port = free_port()
    client = Client(f"127.0.0.1:{port}", "late")
    thread = threading.Thread(target=asyncio.run, args=(refused_for_a_while(port),))
    thread.start()
    client.set_layout(LAYOUT)  # dropped while refused, but kept to lay out again
    client.scatter("pts", np.zeros((2, 2)), fig_kwargs={"title": "late"})
    thread.join(10)
    with serve_in_thread(ingest_port=port, bokeh_port=0) as srv:
        assert client._transport.connected.wait(scaled(10))  # it tries again every 2 s
        client.scatter("pts", np.ones((3, 2)))
        assert client.flush(timeout=scaled(20))
        run = srv.hub.runs["late"]
        assert run.cells is not None and len(run.plots["pts"].data) == 3
    client.close(timeout=1)


def test_a_strict_client_goes_on_through_a_server_restart(tmp_path: Path) -> None:
    port = free_port()
    with Client(f"127.0.0.1:{port}", "r", on_error="raise") as client:
        client.set_layout(LAYOUT)
        with serve_in_thread(ingest_port=port, bokeh_port=0, data_dir=tmp_path):
            for step in range(50):
                client.tandem_lines("loss", step, np.zeros(2))
            assert client.flush(timeout=10)
        for step in range(50, 100):  # the server closed cleanly: nothing raises
            client.tandem_lines("loss", step, np.zeros(2))
        with serve_in_thread(ingest_port=port, bokeh_port=0, data_dir=tmp_path) as srv:
            assert client.flush(timeout=scaled(20))
            assert steps(srv, "r") == list(range(100))


def test_refused_fig_kwargs_are_not_sent_again_when_the_layout_is_restored(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    client.tandem_lines("loss", 0, np.zeros(2), fig_kwargs={"title": "kept"})
    client.tandem_lines("loss", 1, np.zeros(2), fig_kwargs={"x_axis_lable": "typo"})
    assert client.flush(timeout=10) and client.errors
    assert delete(server, "test") == 200
    for step in range(5, 10):
        client.tandem_lines("loss", step, np.zeros(2))
    assert client.flush(timeout=10)
    assert steps(server) == list(range(5, 10))
    assert server.hub.runs["test"].plots["loss"].fig_kwargs == {"title": "kept"}


def test_two_clients_laying_out_one_run_side_by_side_both_go_on(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    left, right = connect(), connect()
    left.set_layout({"loss": (0, 0, 1, 1)})
    left.tandem_lines("loss", 0, np.zeros(2))
    assert left.flush(timeout=10)
    right.set_layout({"other": (0, 1, 1, 1)})  # replaces the layout: loss has no place
    assert right.flush(timeout=10)
    for step in range(1, 200):
        left.tandem_lines("loss", step, np.zeros(2))
        right.tandem_lines("other", step, np.zeros(2))
    assert left.flush(timeout=10) and right.flush(timeout=10)
    run = server.hub.runs["test"]
    assert run.cells == {"loss": (0, 0, 1, 1), "other": (0, 1, 1, 1)}  # side by side
    assert run.layout_version <= 3  # not a fight at every step
    assert steps(server) == list(range(200))
    assert run.plots["other"].data.view()["x"].tolist() == list(range(1, 200))


async def test_frames_resent_while_their_first_copy_is_stored_wait_for_its_fate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = threading.Event()

    def failing(store: RunStore, frames: Any, ids: Any = None, rows: Any = None) -> None:
        assert disk.wait(10)
        raise StoreError("database or disk is full")

    monkeypatch.setattr(RunStore, "append", failing)
    hub = Hub(Store(tmp_path))
    hub.write_behind()
    ingest = Ingest(hub, Guard("127.0.0.1", None), DEFAULT_LIMITS, max_connections=8)
    first, second = object(), object()
    ingest._restorers |= {first, second}
    hub.state("r").apply(Frame("layout", "r", "c", 0, opts={"cells": {"pts": [0, 0, 1, 1]}}))
    spec = PlotSpec("scatter", append=True).to_wire()
    points = b"".join(
        encode(Frame("plot", "r", "c", seq, "pts", spec, (np.ones((1, 2)),), ack=seq == 3))
        for seq in (1, 2, 3)
    )
    on_first = ingest.receive(points, None, first)  # stored on the writer thread...
    on_second = ingest.receive(points, None, second)  # ...when a reconnect sends them again
    await asyncio.sleep(0.05)
    assert not on_second.done()  # not acknowledged before they are stored
    disk.set()
    replies = await asyncio.wait_for(on_second, 10)
    assert [r.get("code") for r in replies] == [UNSTORED]  # resend from 1, on this connection
    assert replies[0]["seq"] == 1 and not any("ack" in reply for reply in replies)
    await on_first
    hub.close()


async def test_a_failed_write_fences_off_every_client_with_frames_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_fails, other_run = threading.Event(), threading.Event()
    calls: list[str] = []

    def append(store: RunStore, frames: Any, ids: Any = None, rows: Any = None) -> None:
        calls.append(store.path.stem)
        if store.path.stem == "r" and calls.count("r") == 1:
            assert first_fails.wait(10)
            raise StoreError("database or disk is full")
        if store.path.stem == "s":
            assert other_run.wait(10)  # another run's slow write, ahead of y's frames
        real_append(store, frames, ids, rows)

    real_append = RunStore.append
    monkeypatch.setattr(RunStore, "append", append)
    hub = Hub(Store(tmp_path))
    hub.write_behind()
    ingest = Ingest(hub, Guard("127.0.0.1", None), DEFAULT_LIMITS, max_connections=8)
    x, y, z = object(), object(), object()
    ingest._restorers |= {x, y, z}
    cells = {"cells": {"a": [0, 0, 1, 1], "b": [0, 1, 1, 1]}}
    for run in ("r", "s"):
        hub.state(run).apply(Frame("layout", run, "setup", 0, opts=cells))
    spec = PlotSpec("scatter", append=True).to_wire()

    def points(run: str, cid: str, plot: str, *seqs: int) -> bytes:
        return b"".join(
            encode(Frame("plot", run, cid, s, plot, spec, (np.ones((1, 2)),), ack=s == seqs[-1]))
            for s in seqs
        )

    on_x = ingest.receive(points("r", "x", "a", 1, 2), None, x)
    await asyncio.sleep(0.05)  # the writer is storing x's frames
    on_z = ingest.receive(points("s", "z", "a", 1), None, z)
    on_y = ingest.receive(points("r", "y", "b", 1, 2), None, y)  # in flight behind z's
    first_fails.set()
    assert [r.get("code") for r in await asyncio.wait_for(on_x, 10)] == [UNSTORED]
    later = ingest.receive(points("r", "y", "b", 3), None, y)  # y has not heard yet
    assert await asyncio.wait_for(later, 10) == []  # ignored: it must not be stored past 1-2
    other_run.set()
    replies = await asyncio.wait_for(on_y, 10)
    assert [(r.get("code"), r.get("seq")) for r in replies] == [(UNSTORED, 1)]
    assert await asyncio.wait_for(on_z, 10) == [{"ack": 1}]
    assert "b" not in hub.runs["r"].plots  # nothing of y's was stored or shown
    hub.close()
