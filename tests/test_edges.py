"""Edges users hit: mistaken addresses and ports, remote errors, bad flags, signals, odd frames."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from browser import scaled
from streamvis import ArgumentError, Client, ServerError
from streamvis._cli import parse_args
from streamvis._protocol import Frame, decode_reply, encode
from streamvis._server import StreamvisServer, serve_in_thread
from test_durability import free_port, wait_for_listener

LAYOUT = {"loss": (0, 0, 1, 1), "pts": (0, 1, 1, 1)}
TYPO = {"x_axis_lable": "x"}  # Bokeh's keyword is x_axis_label


def wait_until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout} s"
        time.sleep(0.01)


def xs(server: StreamvisServer, run: str, plot: str) -> list[float]:
    return list(server.hub.runs[run].plots[plot].data.view()["x"].tolist())


def cli(*args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "streamvis", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stderr_of(proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    return proc.communicate(timeout=timeout)[1].decode()


# -- A. client mistakes --------------------------------------------------------------------


@pytest.mark.parametrize("form", ["http://localhost:{port}", "ws://127.0.0.1:{port}/ingest"])
def test_http_and_ws_addresses_reach_the_ingest(server: StreamvisServer, form: str) -> None:
    with Client(form.format(port=server.ingest_port), "test", exit_timeout=1) as client:
        client.set_layout(LAYOUT)
        client.tandem_lines("loss", 0, np.zeros(2))
        assert client.flush(timeout=5)
    assert xs(server, "test", "loss") == [0]


def test_an_address_without_a_port_says_what_to_write() -> None:
    with pytest.raises(ArgumentError, match="write 'localhost:8080'"):
        Client("localhost", "run")


def test_the_page_port_is_reported_with_the_ingest_port(server: StreamvisServer) -> None:
    address = f"127.0.0.1:{server.bokeh_port}"  # a common mistake: the port of the pages
    with Client(address, "test", exit_timeout=0.1) as client:
        client.set_layout(LAYOUT)
        start = time.monotonic()
        assert client.flush(timeout=10) is False  # at once: waiting would not help
        assert time.monotonic() - start < scaled(5)
        (error,) = client.errors
        assert "page port" in str(error) and str(server.ingest_port) in str(error)
    # Strict: raised at the next call once refused, which may already be set_layout (the
    # sender connects at once) or else the flush.
    refused = pytest.raises(ServerError, match=rf"page port.*here {server.ingest_port}")
    with Client(address, "test", exit_timeout=0.1, on_error="raise") as strict, refused:
        strict.set_layout(LAYOUT)
        strict.flush(timeout=10)


def test_a_frame_too_large_for_the_client_is_an_argument_error() -> None:
    with Client("127.0.0.1:9", "r", max_frame_bytes=100_000, exit_timeout=0.1) as client:
        client.set_layout(LAYOUT)
        with pytest.raises(ArgumentError, match="exceed the frame limit"):
            client.scatter("pts", np.zeros((10_000, 2)))


def test_exit_timeout_set_after_creation_bounds_the_wait_at_exit() -> None:
    script = (
        "import numpy as np; from streamvis import Client\n"
        f"client = Client('127.0.0.1:{free_port()}', 'r')  # nothing listens there\n"
        "client.exit_timeout = 0.5\n"
        "client.set_layout({'loss': (0, 0, 1, 1)}); client.tandem_lines('loss', 0, np.zeros(2))\n"
        "print('queued', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "queued\n"
        start = time.monotonic()
        assert proc.wait(20) == 0
        assert time.monotonic() - start < 3  # the default exit_timeout is 10 s
    finally:
        proc.kill()
        proc.wait()


def test_max_frame_bytes_is_read_only() -> None:
    with Client("127.0.0.1:9", "r", max_frame_bytes=100_000, exit_timeout=0.1) as client:
        assert client.max_frame_bytes == 100_000
        with pytest.raises(AttributeError):
            client.max_frame_bytes = 10**9  # type: ignore[misc]


def test_remote_errors_are_warned_once_and_the_loop_goes_on(
    server: StreamvisServer, connect: Callable[..., Client], caplog: pytest.LogCaptureFixture
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    with caplog.at_level(logging.WARNING, logger="streamvis.client"):
        for step in range(5):  # the same mistake, five times: refused five times
            client.tandem_lines("loss", step, np.zeros(2), fig_kwargs=TYPO)
        for step in range(5, 15):
            client.tandem_lines("loss", step, np.zeros(2))
        assert client.flush(timeout=10) is True
    warned = [r.getMessage() for r in caplog.records if r.name == "streamvis.client"]
    assert len(warned) == 1 and "x_axis_lable" in warned[0], warned
    (error,) = client.errors
    assert error.count == 5 and "x_axis_lable" in str(error)
    assert xs(server, "test", "loss") == list(range(5, 15))


def test_strict_clients_raise_at_the_next_call_which_is_still_delivered(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    client = connect(on_error="raise")
    client.set_layout(LAYOUT)
    client.tandem_lines("loss", 0, np.zeros(2), fig_kwargs=TYPO)
    wait_until(lambda: client.errors)  # the refusal came back
    with pytest.raises(ServerError, match="x_axis_lable"):
        client.tandem_lines("loss", 1, np.zeros(2))
    assert client.flush(timeout=10)
    assert xs(server, "test", "loss") == [1]


# -- B. server edges -----------------------------------------------------------------------


def test_log_level_is_checked_by_name_in_any_case() -> None:
    proc = cli("--log_level", "LOUD")
    stderr = stderr_of(proc)
    assert proc.returncode == 2
    assert "invalid choice: 'LOUD'" in stderr and "Traceback" not in stderr
    assert parse_args(["--log_level", "warning"]).log_level == "WARNING"


# Make and free eight 4 MiB temporaries at once, 20 times (as drawing an image does, in
# all sizes); print the page faults that took.
_FAULTS = """
import resource, sys
import numpy as np
from streamvis._cli import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory()
def temporaries():
    return sum(float(a.sum()) for a in [np.ones(1 << 19) for _ in range(8)])
temporaries()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    temporaries()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")
def test_the_server_process_reuses_freed_memory_instead_of_faulting_in_fresh_pages() -> None:
    """Fresh pages from the kernel cost a fault each (1-2.5 us here): numpy's temporaries,
    new for every image drawn, took 2.5x as long as reused memory."""
    faults = {
        how: int(subprocess.run(
            [sys.executable, "-c", _FAULTS, how], capture_output=True, text=True, check=True
        ).stdout)
        for how in ("default", "kept")
    }  # fmt: skip
    assert faults["default"] > 20 * 2 * 1024  # many made anew (1,024 pages each)
    assert faults["kept"] < 1024  # made once, then reused


def test_a_data_dir_that_is_a_file_is_one_line_of_error(tmp_path: Path) -> None:
    (tmp_path / "notes").write_text("not a folder")
    ports = ["--rest_port", str(free_port()), "--bokeh_port", str(free_port())]
    proc = cli(*ports, "--data_dir", str(tmp_path / "notes"))
    stderr = stderr_of(proc)
    assert proc.returncode == 2
    assert len(stderr.splitlines()) == 1 and stderr.startswith("streamvis_server:"), stderr


async def signal_while_connected(port: int, proc: subprocess.Popen[bytes], sig: int) -> int | None:
    """Send ``sig`` to the server while connected to it; return the close code it sent."""
    async with ws_connect(f"ws://127.0.0.1:{port}/ingest", compression=None) as ws:
        proc.send_signal(sig)
        await asyncio.wait_for(ws.wait_closed(), 10)
        return ws.close_code


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_server_cleanly_and_keeps_the_data(
    tmp_path: Path, sig: signal.Signals
) -> None:
    rest, bokeh = free_port(), free_port()
    ports = ["--rest_port", str(rest), "--bokeh_port", str(bokeh)]
    proc = cli(*ports, "--data_dir", str(tmp_path), "--run_name", "r", "--log_level", "warning")
    try:
        wait_for_listener(rest, proc)
        wait_for_listener(bokeh, proc)
        with Client(f"127.0.0.1:{rest}", "r", exit_timeout=2) as client:
            client.set_layout(LAYOUT)
            for step in range(100):
                client.tandem_lines("loss", step, np.zeros(2))
            assert client.flush(timeout=10)
        # Ctrl-C, or a service manager's stop, while a client is connected
        assert asyncio.run(signal_while_connected(rest, proc, sig)) == 1001  # "going away"
        stderr = stderr_of(proc, timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    with serve_in_thread(data_dir=tmp_path, ingest_port=0, bokeh_port=0) as srv:
        assert xs(srv, "r", "loss") == list(range(100))


def layout_frame(run: str) -> bytes:
    cells = {name: list(cell) for name, cell in LAYOUT.items()}
    return encode(Frame(op="layout", run=run, cid="raw", seq=0, opts={"cells": cells}, ack=True))


def line_point(run: str, seq: int, opts: dict[str, Any], ack: bool = False) -> bytes:
    arrays = (np.array(float(seq)), np.zeros(2))
    return encode(Frame("plot", run, "raw", seq, "loss", opts, arrays, ack=ack))


LINE = {"kind": "tandem_lines", "append": True, "palette": "Viridis256"}


def test_a_palette_that_is_not_a_name_is_refused_by_name(server: StreamvisServer) -> None:
    bad = line_point("raw", 1, {**LINE, "palette": 5}, ack=True)
    replies = asyncio.run(replies_until_ack(server.ingest_port, layout_frame("raw") + bad))
    (error,) = [reply for reply in replies if "err" in reply]
    assert error["seq"] == 1 and "opts.palette is 5" in str(error["err"])
    assert "AttributeError" not in str(error["err"])
    assert replies[-1] == {"ack": 1}


def frame_with_header(header: dict[str, Any], *arrays: np.ndarray) -> bytes:
    """A frame laid out as protocol.encode lays it out, around a header of our own."""
    specs = [[a.dtype.name, list(a.shape)] for a in arrays]
    packed = msgpack.packb({"v": 1, **header, "arrays": specs})
    head = struct.pack(">I", len(packed)) + packed
    parts = [head, b"\0" * (-len(head) % 8)]
    for array in arrays:
        parts += [array.tobytes(), b"\0" * (-array.nbytes % 8)]
    return b"".join(parts)


async def replies_until_ack(port: int, message: bytes, timeout: float = 20) -> list[dict[str, Any]]:
    """Send one message; read its replies (errors come first) up to the acknowledgement."""
    deadline = time.monotonic() + timeout
    replies: list[dict[str, Any]] = []
    async with ws_connect(f"ws://127.0.0.1:{port}/ingest", compression=None) as ws:
        await ws.send(message)
        with contextlib.suppress(asyncio.TimeoutError):  # what came so far tells what is wrong
            while len(replies) < 100 and (not replies or "ack" not in replies[-1]):
                left = max(deadline - time.monotonic(), 0.01)
                replies.append(decode_reply(await asyncio.wait_for(ws.recv(), left)))
    return replies


def test_one_bad_frame_in_a_batch_of_ten_thousand_costs_only_itself(
    server: StreamvisServer,
) -> None:
    frames = [layout_frame("many")]
    for seq in range(1, 10_001):
        if seq == 5_000:  # an op that does not exist; its arrays still say where it ends
            header = {"op": "bogus", "run": "many", "cid": "raw", "seq": seq, "name": "loss"}
            frames.append(frame_with_header(header, np.array(1.0), np.zeros(2)))
        else:
            frames.append(line_point("many", seq, LINE, ack=seq == 10_000))
    replies = asyncio.run(replies_until_ack(server.ingest_port, b"".join(frames)))
    errors = [reply for reply in replies if "err" in reply]
    assert [e.get("seq") for e in errors] == [5_000] and "'bogus'" in str(errors[0]["err"])
    assert replies[-1] == {"ack": 10_000}
    assert xs(server, "many", "loss") == [float(s) for s in range(1, 10_001) if s != 5_000]


async def open_idle(port: int, count: int) -> list[ClientConnection]:
    """Open up to ``count`` websockets that never send; stop at the first that cannot open."""
    idle, uri = [], f"ws://127.0.0.1:{port}/ingest"
    for _ in range(count):
        try:
            ws = await ws_connect(uri, compression=None, open_timeout=2)
        except (OSError, asyncio.TimeoutError):
            break
        idle.append(ws)
    return idle


async def deliver(port: int, run: str) -> bool:
    def send() -> bool:
        with Client(f"127.0.0.1:{port}", run, exit_timeout=1) as client:
            client.set_layout(LAYOUT)
            client.tandem_lines("loss", 0, np.zeros(2))
            return client.flush(timeout=10)

    return await asyncio.to_thread(send)


def test_idle_connections_cannot_lock_out_a_client() -> None:
    async def scenario(port: int) -> None:
        idle = await open_idle(port, 20)
        assert len(idle) == 20  # at the limit, the server closes the idlest instead
        try:
            assert await deliver(port, "limited")
            for _ in range(500):  # the closes are under way; give them 5 s
                if sum(ws.close_code == 1013 for ws in idle) >= 12:
                    break
                await asyncio.sleep(0.01)
            assert sum(ws.close_code == 1013 for ws in idle) >= 12
        finally:
            await asyncio.gather(*(ws.close() for ws in idle))

    with serve_in_thread(ingest_port=0, bokeh_port=0, max_connections=8) as srv:
        asyncio.run(asyncio.wait_for(scenario(srv.ingest_port), 30))
        assert xs(srv, "limited", "loss") == [0]


def test_idle_connections_cannot_exhaust_the_servers_files() -> None:
    rest, bokeh = free_port(), free_port()
    server = [sys.executable, "-m", "streamvis", "--rest_port", str(rest)]
    server += ["--bokeh_port", str(bokeh), "--no_persist"]
    few_files = ["sh", "-c", 'ulimit -n 128 && exec "$@"', "sh"]  # 128 file descriptors
    proc = subprocess.Popen(
        few_files + server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    async def scenario() -> None:
        idle = await open_idle(rest, 150)  # each takes a file of the server's
        try:
            assert len(idle) == 150  # the server closed the idlest ones to make room
            assert await deliver(rest, "files")
        finally:
            await asyncio.gather(*(ws.close() for ws in idle))

    try:
        wait_for_listener(rest, proc)
        asyncio.run(asyncio.wait_for(scenario(), 40))
    finally:
        proc.terminate()
        proc.wait(10)
