"""Nothing lost: a server killed mid-stream and restarted shows every step exactly once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from browser import Page, scaled
from streamvis import Client
from streamvis import _protocol as protocol
from streamvis._chunks import Chunks
from streamvis._errors import StoreError
from streamvis._history import Stored
from streamvis._plots.envelope import DETAIL_ROWS
from streamvis._protocol import Frame
from streamvis._runstore import RunStore
from streamvis._server import StreamvisServer, serve_in_thread


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
    proc = subprocess.Popen([sys.executable, "-m", "streamvis", *ports, *options])
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
            log = tmp_path / "runs" / "fault.sqlite-wal"  # commits land here first
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


def test_kill_9_at_random_instants_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rest, bokeh = free_port(), free_port()
    rng = np.random.default_rng(7)
    client = Client(f"127.0.0.1:{rest}", "fault", exit_timeout=5, on_error="raise")
    client.set_layout({"loss": (0, 0, 1, 1), "pts": (0, 1, 1, 1)})
    step = 0

    def send(until: float) -> None:
        nonlocal step
        while time.monotonic() < until:  # small appends, and a 128 KiB one every 8 steps
            client.tandem_lines("loss", step, np.array([step, -step], np.float32))
            if step % 8 == 0:
                client.scatter("pts", np.full((16_384, 2), step, np.float32), append=True)
            step += 1
            time.sleep(0.001)  # a training step

    try:
        for _ in range(3):
            with server_process(rest, bokeh, tmp_path) as proc:
                send(time.monotonic() + float(rng.uniform(0.2, 1.0)))
                os.kill(proc.pid, signal.SIGKILL)  # wherever its writes are
                proc.wait(10)
            send(time.monotonic() + 0.1)  # and calls go on while no server runs
        with server_process(rest, bokeh, tmp_path):
            assert client.flush(timeout=scaled(60))
    finally:
        client.close(timeout=1)
    with serve_in_thread(ingest_port=0, bokeh_port=0, data_dir=tmp_path) as srv:
        run = srv.hub.runs["fault"]
        assert run.plots["loss"].data.view()["x"].tolist() == list(range(step))
        xs = run.plots["pts"].data.view()["x"]
        assert xs[::16_384].tolist() == list(range(0, step, 8)) and len(xs) % 16_384 == 0


@contextmanager
def small_disk(tmp_path: Path, size: str = "8m") -> Iterator[Path]:
    """A real tmpfs of ``size`` (root mounts one here); skips where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for a full disk: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_keeps_the_data_waiting_and_delivers_it_once_space_frees(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path) as disk:
        ballast = disk / "ballast"
        with open(ballast, "wb") as file:  # leaves the run about 1.5 MiB
            file.write(b"\1" * (6 * 2**20 + 2**19))
        data = disk / "data"
        with serve_in_thread(ingest_port=0, bokeh_port=0, data_dir=data) as srv:
            client = Client(f"127.0.0.1:{srv.ingest_port}", "full", exit_timeout=5)
            client.set_layout({"loss": (0, 0, 1, 1), "pts": (0, 1, 1, 1)})
            for step in range(200):  # 128 KiB frames among small ones: 3 MiB in all
                client.tandem_lines("loss", step, np.zeros(2, np.float32))
                if step % 8 == 0:
                    client.scatter("pts", np.full((16_384, 2), step, np.float32), append=True)
            assert not client.flush(timeout=scaled(5))  # no call raised or blocked
            assert any("full" in str(error) for error in client.errors), client.errors
            ballast.unlink()  # space frees up
            assert client.flush(timeout=scaled(60))
            client.close()
        with serve_in_thread(ingest_port=0, bokeh_port=0, data_dir=data) as again:
            run = again.hub.runs["full"]  # what was acknowledged is on disk, each once
            assert run.plots["loss"].data.view()["x"].tolist() == list(range(200))
            assert run.plots["pts"].data.view()["x"][::16_384].tolist() == list(range(0, 200, 8))


def test_a_store_recovers_from_a_full_disk_smaller_than_its_write_ahead_log(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path) as disk:  # SQLite copies its log only every 64 MiB
        ballast = disk / "ballast"
        ballast.write_bytes(b"\1" * 6 * 2**20)
        store = RunStore(disk / "r.sqlite")
        frame = Frame("plot", "r", "c", 0, "loss", {"append": True}, (np.zeros(16),))
        stored = failed = 0
        for seq in range(20_000):  # a transaction each: every one adds pages to the log
            try:
                store.append([(replace(frame, seq=seq), protocol.encode(frame))])
            except StoreError:
                failed += 1
                ballast.unlink(missing_ok=True)  # space frees up
            else:
                stored += 1
                if stored == 3_000:
                    break
        store.close()
        assert stored == 3_000 and 1 <= failed < 50, (stored, failed)


def stored_run(directory: Path, run: str, steps: int) -> None:
    """Store ``steps`` steps of a loss plot for ``run`` in ``directory``."""
    with (
        serve_in_thread(ingest_port=0, bokeh_port=0, data_dir=directory) as srv,
        Client(f"127.0.0.1:{srv.ingest_port}", run) as client,
    ):
        client.set_layout({"loss": (0, 0, 1, 1)})
        for step in range(steps):
            client.tandem_lines("loss", step, np.zeros(2))
        assert client.flush(timeout=10)


@contextmanager
def serving_while_reading(
    directory: Path, monkeypatch: pytest.MonkeyPatch, run: str, steps: int
) -> Iterator[tuple[StreamvisServer, threading.Event]]:
    """A server on ``directory``, where ``run`` has ``steps`` stored steps, that takes until
    the event it gives is set to read its stored runs (as a large run would)."""
    stored_run(directory, run, steps)
    reading = threading.Event()
    real_current = RunStore.current

    def slow_current(store: RunStore, chunks: bool = True) -> Iterator[Stored | Chunks]:
        assert reading.wait(scaled(10))
        yield from real_current(store, chunks)

    monkeypatch.setattr(RunStore, "current", slow_current)
    with serve_in_thread(ingest_port=0, bokeh_port=0, data_dir=directory, wait_loaded=False) as srv:
        yield srv, reading


def test_ports_open_before_the_stored_runs_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving_while_reading(tmp_path, monkeypatch, "kept", 10) as (srv, reading):
        client = Client(f"127.0.0.1:{srv.ingest_port}", "kept", exit_timeout=5)
        assert client._transport.connected.wait(scaled(10))  # the ingest port is open...
        client.set_layout({"loss": (0, 0, 1, 1)})
        for step in range(10, 20):
            client.tandem_lines("loss", step, np.zeros(2))
        assert not client.flush(timeout=0.5)  # ...and what comes waits for the stored runs
        assert "kept" not in srv.hub.runs
        reading.set()
        assert client.flush(timeout=scaled(10))
        assert srv.hub.runs["kept"].plots["loss"].data.view()["x"].tolist() == list(range(20))
        client.close()


def test_a_run_deleted_while_the_stored_runs_are_read_stays_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving_while_reading(tmp_path, monkeypatch, "gone", 1) as (srv, reading):
        answer: list[int] = []
        url = f"http://127.0.0.1:{srv.bokeh_port}/runs/gone"
        request = urllib.request.Request(url, method="DELETE")
        deleting = threading.Thread(
            target=lambda: answer.append(urllib.request.urlopen(request, timeout=20).status)
        )
        deleting.start()
        deleting.join(0.3)
        assert deleting.is_alive()  # it waits for the reading, which uses the run's store
        reading.set()
        deleting.join(scaled(10))
        assert answer == [200]
        assert "gone" not in srv.hub.runs and not (tmp_path / "runs" / "gone.sqlite").exists()
