"""A training loop goes on through what others do to its run: deletes, clears, new layouts."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np

from browser import Page
from streamvis import Client
from streamvis.server import StreamvisServer, serve_in_thread

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


def test_a_failed_delete_is_answered_to_its_request_not_to_another_runs_client(
    tmp_path: Path,
) -> None:
    with serve_in_thread(ingest_port=0, bokeh_port=0, data_dir=tmp_path) as srv:
        client = Client(f"127.0.0.1:{srv.ingest_port}", "bystander", on_error="raise")
        client.set_layout(LAYOUT)
        client.tandem_lines("loss", 0, np.zeros(2))
        assert client.flush(timeout=10)
        assert delete(srv, "x" * 300) == 404  # too long a name: refused before the disk
        for step in range(1, 50):
            client.tandem_lines("loss", step, np.zeros(2))
        assert client.flush(timeout=10)  # raises ServerError if the failure reached it
        assert steps(srv, "bystander") == list(range(50))
        client.close()


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
