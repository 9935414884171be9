"""Nothing lost: a server killed mid-stream and restarted shows every step exactly once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from browser import Page, scaled
from streamvis import Client
from streamvis.plots.envelope import DETAIL_ROWS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_listener(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited with {proc.returncode}"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@contextmanager
def server_process(rest: int, bokeh: int, data_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``streamvis_server`` as users run it, in its own process."""
    ports = ["--rest_port", str(rest), "--bokeh_port", str(bokeh)]
    options = ["--run_name", "fault", "--data_dir", str(data_dir), "--log_level", "WARNING"]
    proc = subprocess.Popen([sys.executable, "-m", "streamvis.cli", *ports, *options])
    try:
        wait_for_listener(rest, proc)
        wait_for_listener(bokeh, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, browser: Callable[[], Page]
) -> None:
    rest, bokeh, steps = free_port(), free_port(), DETAIL_ROWS  # the page holds every row
    client = Client(f"127.0.0.1:{rest}", "fault", exit_timeout=5)
    try:
        with server_process(rest, bokeh, tmp_path) as first:
            client.set_layout({"loss": (0, 0, 1, 1)})
            for step in range(steps // 2):
                client.tandem_lines("loss", step, np.array([step, -step], np.float32))
            log = tmp_path / "fault.log"
            deadline = time.monotonic() + scaled(20)
            while not (log.exists() and log.stat().st_size > 2000) and time.monotonic() < deadline:
                time.sleep(0.001)
            os.kill(first.pid, signal.SIGKILL)  # the server has logged some frames, not all
            first.wait(10)
            logged = log.stat().st_size
        assert logged > 2000
        for step in range(steps // 2, steps):  # calls go on while no server exists
            client.tandem_lines("loss", step, np.array([step, -step], np.float32))
        with server_process(rest, bokeh, tmp_path):
            assert client.flush(timeout=scaled(60))
            page = browser()
            page.open(f"http://127.0.0.1:{bokeh}/")
            page.all_rendered()
            assert page.wait_for_line_length("loss", steps) == list(range(steps))
            assert page.line("loss", 1)[1] == [-s for s in range(steps)]
    finally:
        client.close(timeout=1)


def test_a_restarted_server_shows_what_it_showed(
    tmp_path: Path, browser: Callable[[], Page]
) -> None:
    rest, bokeh = free_port(), free_port()
    with server_process(rest, bokeh, tmp_path), Client(f"127.0.0.1:{rest}", "fault") as client:
        client.set_layout({"pts": (0, 0, 1, 1)})
        for n in range(1, 30):
            client.scatter("pts", np.full((n, 2), n, np.float32))
        assert client.flush(timeout=scaled(30))
    with server_process(rest, bokeh, tmp_path):
        page = browser()
        page.open(f"http://127.0.0.1:{bokeh}/")
        page.all_rendered()
        assert page.wait_for_column_length("pts", "x", 29) == [29] * 29
