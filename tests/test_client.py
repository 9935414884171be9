"""Client calls check their arguments at the caller's line and never wait on the network."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest

import streamvis
from streamvis import (
    ArgumentError,
    Client,
    ClientClosed,
    ColorSpec,
    DTypeError,
    FrameTooLarge,
    GridSpec,
    ShapeError,
    UnknownPlot,
)


@pytest.fixture
def offline() -> Iterator[Client]:
    """A client whose server is not running (nothing listens on port 9 of loopback)."""
    client = Client("127.0.0.1:9", "run", exit_timeout=0.1)
    client.set_layout({"a": (0, 0, 1, 1), "lines": (0, 1, 1, 1), "loss": (1, 0, 1, 2)})
    yield client
    client.close(timeout=0.1)


def test_public_names_are_exactly_these() -> None:
    assert set(streamvis.__all__) == {
        "ArgumentError", "Client", "ClientClosed", "ColorSpec", "DTypeError", "FrameTooLarge",
        "GridSpec", "ProtocolError", "ServerError", "ShapeError", "StreamvisError",
        "StreamvisServer", "UnknownPlot", "UnsupportedVersion", "read_run", "serve", "show",
    }  # fmt: skip
    assert streamvis.StreamvisServer.__name__ == "StreamvisServer"
    assert [streamvis.read_run.__name__, streamvis.serve.__name__, streamvis.show.__name__] == [
        "read_run", "serve", "show"
    ]  # fmt: skip


def test_importing_the_client_does_not_import_tornado_or_bokeh_models() -> None:
    code = (
        "import sys; from streamvis import Client, ColorSpec, GridSpec; ColorSpec('Viridis256', 0);"
        "heavy = ('bokeh.models', 'bokeh.server', 'bokeh.plotting');"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'tornado' or m.startswith(heavy)];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_calls_return_at_once_while_the_server_is_down(offline: Client) -> None:
    start = time.perf_counter()
    for step in range(200):
        offline.tandem_lines("loss", step, np.random.rand(8))
        offline.scatter("a", np.random.rand(50, 2), spatial_dim=1)
    assert time.perf_counter() - start < 2.0
    assert not offline.connected
    assert offline.flush(timeout=0.05) is False


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda c: c.scatter("nope", np.zeros((3, 2))), UnknownPlot, "'nope' is not in the layout"),
        (
            lambda c: c.scatter("a", np.zeros((3, 3)), spatial_dim=1),
            ShapeError,
            "has size 3 in shape",
        ),
        (
            lambda c: c.scatter("a", np.zeros((3, 2)), spatial_dim=2),
            ShapeError,
            "spatial_dim=2 is out of range",
        ),
        (lambda c: c.scatter("a", np.array(["a", "b"])), DTypeError, "dtype <U1"),
        (lambda c: c.scatter("a", np.zeros((3, 2), bool)), DTypeError, "astype"),
        (lambda c: c.scatter("a", np.zeros((3, 2), complex)), DTypeError, ".real"),
        (
            lambda c: c.scatter("a", np.zeros((3, 2)), color=ColorSpec("Viridis256", 1)),
            ShapeError,
            "spatial axis",
        ),
        (
            lambda c: c.multi_lines("lines", np.zeros((3, 4, 2)), line_dims=(0, 0)),
            ShapeError,
            "repeats",
        ),
        (
            lambda c: c.multi_lines(
                "lines", np.zeros((3, 4, 2)), line_dims=(0,), grid=GridSpec(1, 2)
            ),
            ShapeError,
            "must be one of line_dims",
        ),
        (lambda c: c.tandem_lines("loss", [1, 2], [1.0]), ShapeError, "x must be a single number"),
        (lambda c: c.tandem_lines("loss", 1, np.zeros((2, 2))), ShapeError, "ys must be 1-D"),
        (
            lambda c: c.tandem_lines("loss", 1, [1.0], "Virdis256"),
            ArgumentError,
            "did you mean 'Viridis256'",
        ),
        (
            lambda c: c.scatter("a", np.zeros((3, 2)), fig_kwargs={"f": object()}),
            ArgumentError,
            "plain values",
        ),
        (
            lambda c: c.tandem_lines("loss", 1, [1.0, 2.0], labels="train"),
            ArgumentError,
            "labels must be a list of line names, got 'train'",
        ),
        (
            lambda c: c.tandem_lines("loss", 1, [1.0, 2.0], labels=["a", 2]),
            ArgumentError,
            "labels must be strings",
        ),
        (
            lambda c: c.tandem_lines("loss", 1, [1.0, 2.0], labels=["a"]),
            ShapeError,
            "labels has 1 names for 2 lines",
        ),
    ],
)
def test_bad_calls_raise_precise_errors(offline: Client, call, error, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        call(offline)


def test_plotting_before_set_layout_says_what_to_do() -> None:
    with (
        Client("127.0.0.1:9", "r", exit_timeout=0.1) as client,
        pytest.raises(UnknownPlot, match="call set_layout"),
    ):
        client.scatter("a", np.zeros((3, 2)))


def test_append_that_cannot_extend_is_refused_at_the_call(offline: Client) -> None:
    offline.tandem_lines("loss", 0, np.zeros(3))
    with pytest.raises(ShapeError, match="it has 3 lines but ys has 4 values"):
        offline.tandem_lines("loss", 1, np.zeros(4))
    with pytest.raises(ShapeError, match="'loss' is a tandem_lines plot"):
        offline.scatter("loss", np.zeros((3, 2)))


def test_bad_layouts_and_addresses() -> None:
    with pytest.raises(ArgumentError, match=r"ingest port .* write 'localhost:8080'"):
        Client("localhost", "r")
    with pytest.raises(ArgumentError, match="run name 'a/b'"):
        Client("localhost:1", "a/b")
    with Client("127.0.0.1:9", "r", exit_timeout=0.1) as client:
        with pytest.raises(ArgumentError, match="overlap at row 0, column 1"):
            client.set_layout({"a": (0, 0, 1, 2), "b": (0, 1, 1, 1)})
        with pytest.raises(ArgumentError, match="rowspan must be between 1 and 64"):
            client.set_layout({"a": (0, 0, 0, 1)})


def test_the_caller_may_mutate_its_array_after_the_call(offline: Client) -> None:
    data = np.zeros((3, 2))
    offline.scatter("a", data)
    queued = offline._transport.queue.queued[-1].arrays[0]
    data[:] = 7
    assert not queued.any()


def test_a_large_array_is_copied_into_a_pooled_buffer_the_caller_cannot_touch(
    offline: Client,
) -> None:
    data = np.zeros((20_000, 2), ">f8")  # big-endian: the copy is little-endian
    offline.scatter("a", data)
    queued = offline._transport.queue.queued[-1]
    data[:] = 7
    assert queued.buffer is not None and queued.arrays[0].base is queued.buffer
    assert queued.arrays[0].dtype == np.dtype("<f8") and not queued.arrays[0].any()


def test_a_superseded_replace_gives_its_buffer_back_for_the_next_call(offline: Client) -> None:
    offline.scatter("a", np.zeros((20_000, 2)))
    first = offline._transport.queue.queued[-1].buffer
    offline.scatter("a", np.ones((20_000, 2)))  # supersedes the first: its buffer is free
    offline.scatter("a", np.full((20_000, 2), 2.0))  # and takes it
    queued = offline._transport.queue.queued[-1]
    assert queued.buffer is first and queued.arrays[0][0, 0] == 2.0


def test_closed_client_refuses_calls() -> None:
    client = Client("127.0.0.1:9", "r", exit_timeout=0.1)
    client.close()
    with pytest.raises(ClientClosed, match="create a new Client"):
        client.set_layout({"a": (0, 0, 1, 1)})


def test_torch_tensors_are_accepted(offline: Client) -> None:
    torch = pytest.importorskip("torch")
    tensor = torch.ones((4, 2), requires_grad=True) * 2
    offline.scatter("a", tensor)
    offline.tandem_lines("loss", torch.tensor(3), torch.zeros(3, dtype=torch.bfloat16))
    assert offline._transport.queue.queued[-2].arrays[0].tolist() == [[2.0, 2.0]] * 4


def test_an_unsent_replace_is_superseded_but_keeps_its_fig_kwargs(offline: Client) -> None:
    offline.scatter("a", np.zeros((3, 2)), fig_kwargs={"title": "T"})
    offline.scatter("a", np.ones((5, 2)))
    queued = [item for item in offline._transport.queue.queued if item.name == "a"]
    assert len(queued) == 1
    assert queued[0].arrays[0].shape == (5, 2) and queued[0].opts["fig"] == {"title": "T"}


def test_numpy_integers_work_as_axes(offline: Client) -> None:
    offline.scatter(
        "a", np.zeros((3, 2)), spatial_dim=np.int64(1), color=ColorSpec("Viridis", np.int32(0))
    )
    offline.multi_lines(
        "lines",
        np.zeros((3, 4, 2)),
        line_dims=np.array([0]),  # type: ignore[arg-type]  # arrays of dims work too
        spatial_dim=np.int64(2),
    )
    opts = offline._transport.queue.queued[-1].opts
    assert type(opts["spatial_dim"]) is int and all(type(d) is int for d in opts["line_dims"])
    with pytest.raises(ArgumentError, match=r"spatial_dim must be an int, got 1.0"):
        offline.scatter("a", np.zeros((3, 2)), spatial_dim=1.0)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="num_columns must be between 1 and 1024"):
        GridSpec(0, 2**64)


def test_limits_on_layouts_and_lines_are_checked_at_once(offline: Client) -> None:
    with pytest.raises(ArgumentError, match="rowspan must be between 1 and 64, got 100000"):
        offline.set_layout({"a": (0, 0, 100_000, 100_000)})
    with pytest.raises(ShapeError, match=r"at most 256 lines.*multi_lines or scatter"):
        offline.tandem_lines("loss", 0, np.zeros(1000))
    with pytest.raises(ShapeError, match="not a rectangular array"):
        offline.scatter("a", [[1, 2], [3]])


def test_a_queued_replace_never_jumps_over_a_clear(offline: Client) -> None:
    offline.scatter("a", np.zeros((3, 2)))
    offline.clear()
    offline.set_layout({"a": (0, 0, 1, 1)})
    offline.scatter("a", np.ones((4, 2)))
    ops = [(i.op, i.arrays[0].shape if i.arrays else None) for i in offline._transport.queue.queued]
    assert ops[-4:] == [("plot", (3, 2)), ("clear", None), ("layout", None), ("plot", (4, 2))]


def test_flush_and_close_keep_their_timeout_when_the_buffer_is_full() -> None:
    client = Client("127.0.0.1:9", "r", max_buffer_bytes=10_000, exit_timeout=0.1)
    client.set_layout({"a": (0, 0, 1, 1)})
    client.scatter("a", np.zeros((590, 2)), append=True)  # with the layout: 9952 of 10000 bytes
    start = time.monotonic()
    assert client.flush(timeout=0.5) is False
    assert client.close(timeout=0.5) is False
    assert time.monotonic() - start < 3


def test_a_dropped_client_still_delivers_at_exit() -> None:
    from streamvis._server import serve_in_thread

    with serve_in_thread(ingest_port=0, bokeh_port=0) as srv:
        script = (
            "import gc, numpy as np; from streamvis import Client\n"
            "def send():\n"
            f"    c = Client('127.0.0.1:{srv.ingest_port}', 'dropped')\n"
            "    c.set_layout({'a': (0, 0, 1, 1)})\n"
            "    c.scatter('a', np.zeros((7, 2)))\n"
            "send(); gc.collect()\n"
        )
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
        assert len(srv.hub.runs["dropped"].plots["a"].data) == 7


def test_a_refused_call_does_not_become_the_plots_last_call(offline: Client) -> None:
    offline.scatter("a", np.zeros((4, 10, 2)), spatial_dim=2, color=ColorSpec("Viridis256", 0))
    with pytest.raises(ShapeError, match="more than 16 axes"):
        offline.scatter("a", np.zeros((1,) * 16 + (2,)))
    small = Client("127.0.0.1:9", "r", max_frame_bytes=100_000, exit_timeout=0.1)
    small.set_layout({"a": (0, 0, 1, 1)})
    small.scatter("a", np.zeros((4, 10, 2)), spatial_dim=2, color=ColorSpec("Viridis256", 0))
    with pytest.raises(FrameTooLarge):
        small.scatter("a", np.zeros((8, 8192, 2)), spatial_dim=2, color=ColorSpec("Viridis256", 0))
    small.scatter(
        "a", np.zeros((4, 3, 2)), spatial_dim=2, color=ColorSpec("Viridis256", 0), append=True
    )
    small.close(timeout=0.1)


def test_empty_fig_kwargs_are_sent_to_reset_the_figure(offline: Client) -> None:
    offline.scatter("a", np.zeros((3, 2)), fig_kwargs={"title": "T"})
    offline.scatter("a", np.zeros((3, 2)), append=True)
    offline.scatter("a", np.zeros((3, 2)), append=True, fig_kwargs={})
    assert offline._transport.queue.queued[-1].opts["fig"] == {}
    assert "fig" not in offline._transport.queue.queued[-2].opts


def test_the_seeds_calls_stay_valid_and_what_follows_the_data_is_named(offline: Client) -> None:
    offline.set_layout({"loss": (1, 0, 1, 1), "mu": (0, 0, 1, 1), "c": (0, 1, 1, 1)})
    offline.tandem_lines("loss", 1, np.zeros(3), "Viridis256")  # positional, as in the seed
    grid = GridSpec(1, 8, 1.2)
    offline.scatter("c", np.zeros((3, 16, 2)), spatial_dim=2, color=ColorSpec("Viridis256", 0))
    offline.multi_lines("mu", np.zeros((2, 16, 5, 2)), line_dims=(0, 1), spatial_dim=3, grid=grid)
    with pytest.raises(TypeError):
        offline.scatter("c", np.zeros((3, 2)), 1, True)  # type: ignore[call-arg]
