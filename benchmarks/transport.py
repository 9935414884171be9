"""Ingest throughput: streamvis Client -> StreamvisServer beside a bare websockets limit.

Both sides move msgpack-framed float32 arrays of shape (n, 2) over one loopback websocket
(compression off). The bare server decodes each frame (msgpack header + ``np.frombuffer``)
and drops it; the bare client builds each frame from a small msgpack header and the array
bytes. The streamvis side is a real ``Client`` (scatter, ``append=True`` so nothing is
coalesced) and a real ``StreamvisServer`` on its own thread that applies every frame to the
run state; a run lasts from the first call until ``flush()`` returns. Each server runs on
its own thread and event loop; client and server share the GIL in both cases (the targets
use this setup). Informational: a bare server that keeps a copy of every array (what storing
appends costs at least), replace-mode calls, and both servers as their own processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import mmap
import os
import selectors
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

import _common
from streamvis import Client
from streamvis._server import StreamvisServer, serve_in_thread

PAYLOADS = (("64 B", 64), ("4 KiB", 4096), ("256 KiB", 256 * 1024), ("4 MiB", 4 * 2**20))
MAX_SIZE = 256 * 2**20
PREFIX = struct.Struct(">I")
SYNC = "sync"  # a text message: the bare server answers once everything before it is decoded
RUN, PLOT, REPLACE_PLOT = "bench", "pts", "pts_replace"


def payload_array(nbytes: int) -> np.ndarray:
    """A float32 (n, 2) array of ``nbytes`` bytes (a scatter with spatial axis 1)."""
    rng = np.random.default_rng(nbytes)
    return rng.standard_normal((nbytes // 8, 2)).astype(np.float32)


class BareServer:
    """A websockets server on its own thread and loop: decodes frames, drops (or keeps) them;
    or writes each message, with its crc32, to the end of the file ``write`` (on its loop:
    the least that storing the bytes costs, with no thread to hand them to)."""

    def __init__(self, keep: bool = False, write: Path | None = None) -> None:
        self.keep = keep
        self._file = os.open(write, os.O_WRONLY | os.O_CREAT | os.O_APPEND) if write else None
        self.kept: list[np.ndarray] = []
        self.frames = 0
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._main, name="bare-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the bare websockets server did not start within 10 s")

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = self._loop.create_future()
        async with serve(
            self._handle, "127.0.0.1", 0, compression=None, max_size=MAX_SIZE
        ) as server:
            self.port = int(next(iter(server.sockets)).getsockname()[1])
            self._ready.set()
            await self._stop

    async def _handle(self, ws: ServerConnection) -> None:
        dtypes: dict[str, np.dtype[Any]] = {}
        async for message in ws:
            if isinstance(message, str):
                await ws.send(SYNC)
                continue
            view = memoryview(message)
            (length,) = PREFIX.unpack_from(view)
            header = msgpack.unpackb(view[PREFIX.size : PREFIX.size + length])
            dtype = dtypes.get(header["dtype"]) or dtypes.setdefault(
                header["dtype"], np.dtype(header["dtype"])
            )
            offset = PREFIX.size + length
            offset += -offset % 8
            count = header["shape"][0] * header["shape"][1]
            array = np.frombuffer(view, dtype=dtype, count=count, offset=offset)
            if self.keep:
                self.kept.append(array.copy())
            if self._file is not None:
                os.writev(self._file, [PREFIX.pack(zlib.crc32(view)), view])
            self.frames += 1

    def close(self) -> None:
        """Stop the server and its thread."""
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)
        if self._file is not None:
            os.close(self._file)


async def _bare_send(port: int, array: np.ndarray, count: int) -> float:
    """Send ``count`` frames as fast as possible; seconds until the server has decoded all."""
    shape = list(array.shape)
    payload = array.data.cast("B")
    async with connect(f"ws://127.0.0.1:{port}/", compression=None, max_size=MAX_SIZE) as ws:
        await ws.send(SYNC)
        await ws.recv()
        start = time.perf_counter()
        for seq in range(count):
            header = msgpack.packb({"seq": seq, "dtype": "float32", "shape": shape})
            pad = b"\0" * (-(PREFIX.size + len(header)) % 8)
            await ws.send(b"".join((PREFIX.pack(len(header)), header, pad, payload)))
        await ws.send(SYNC)
        await asyncio.wait_for(ws.recv(), 120)
        return time.perf_counter() - start


def bare_run(port: int, array: np.ndarray, count: int, server: BareServer | None = None) -> float:
    """One bare run of ``count`` frames on a fresh connection; returns seconds."""
    before = server.frames if server is not None else 0
    if server is not None:
        server.kept.clear()
    seconds = asyncio.run(_bare_send(port, array, count))
    if server is not None and server.frames - before != count:
        raise RuntimeError(f"bare server decoded {server.frames - before} of {count} frames")
    return seconds


def streamvis_run(
    client: Client, array: np.ndarray, count: int, server: StreamvisServer | None = None
) -> float:
    """``count`` appending scatter calls, timed until flush() returns; checks the server."""
    _fresh_run(client)
    seconds = _timed_calls(client, PLOT, array, count, append=True)
    rows = _probe(lambda: len(server.hub.runs[RUN].plots[PLOT].data)) if server else None
    if rows is not None and rows != count * array.shape[0]:
        raise RuntimeError(f"server holds {rows} rows, expected {count * array.shape[0]}")
    return seconds


def _timed_calls(client: Client, name: str, array: np.ndarray, count: int, append: bool) -> float:
    """Seconds from the first of ``count`` scatter calls until flush() returns."""
    start = time.perf_counter()
    for _ in range(count):
        client.scatter(name, array, spatial_dim=1, append=append)
    if not client.flush(timeout=300):
        raise RuntimeError(f"flush after {count} calls to {name!r} timed out")
    return time.perf_counter() - start


def _fresh_run(client: Client) -> None:
    """Empty the run and lay it out again, delivered before the timing starts."""
    client.clear()
    client.set_layout({PLOT: (0, 0, 1, 1), REPLACE_PLOT: (0, 1, 1, 1)})
    if not client.flush(timeout=60):
        raise RuntimeError("flush before the run timed out")


def _probe(read: Callable[[], int]) -> int | None:
    """``read()``, or None if the internals it reads have changed (src/ is a moving target)."""
    try:
        return int(read())
    except (AttributeError, KeyError, TypeError):
        return None


def replace_run(
    server: StreamvisServer, client: Client, array: np.ndarray, count: int
) -> dict[str, Any]:
    """``count`` replacing scatter calls (the client coalesces them), timed until flush()."""
    _fresh_run(client)

    def sequence() -> int:  # the frames the sender has numbered (and so sent)
        return int(client._transport.queue.numbered)

    seq_before = _probe(sequence)
    seconds = _timed_calls(client, REPLACE_PLOT, array, count, append=False)
    seq_after = _probe(sequence)
    sent = None if seq_before is None or seq_after is None else seq_after - seq_before - 1
    applied = _probe(lambda: server.hub.runs[RUN].plots[REPLACE_PLOT].generation + 1)
    return {"seconds": seconds, "calls": count, "frames_sent": sent, "frames_applied": applied}


def fresh_memory_mb_per_s(array: np.ndarray, max_bytes: int) -> float:
    """MB/s of copying ``array`` into new memory, kept (as storing appends must do at least).

    Memory the process never touched costs a page fault per page on first write; on some
    machines that costs more than receiving the same bytes.
    """
    count = max(8, max_bytes // array.nbytes)
    kept = []
    start = time.perf_counter()
    for _ in range(count):
        memory = mmap.mmap(-1, array.nbytes)  # never reused memory, whatever malloc holds
        np.frombuffer(memory, array.dtype).reshape(array.shape)[...] = array
        kept.append(memory)
    seconds = time.perf_counter() - start
    kept.clear()
    return count * array.nbytes / seconds / 1e6


def storing_cost(rows: list[dict[str, Any]], max_bytes: int) -> list[dict[str, Any]]:
    """Per frame: writing the payload once into new memory, beside the bare limit's whole
    cost (what keeping appended data adds at least, where the bare server keeps nothing)."""
    out = []
    for r in rows:
        if r["bytes"] < 2**16:
            continue
        fresh = fresh_memory_mb_per_s(payload_array(r["bytes"]), max_bytes)
        out.append({
            "payload": r["payload"],
            "fresh_mb_per_s": fresh,
            "fresh_us_per_frame": r["bytes"] / fresh,
            "bare_us_per_frame": 1e6 / r["bare"]["frames_per_s"],
            "ratio": r["ratio"],
        })  # fmt: skip
    return out


def calibrated_count(
    run: Callable[[int], float], nbytes: int, duration: float, max_bytes: int
) -> int:
    """Frames for a run of about ``duration`` seconds, from a short trial run."""
    trial = int(min(2000, max(8, 16 * 2**20 // nbytes)))
    rate = trial / run(trial)
    return int(max(8, min(rate * duration, max_bytes // nbytes, 2_000_000)))


def _swap(run: Callable[[np.ndarray, int], float], array: np.ndarray, count: int) -> float:
    return run(array, count)


def _summary(count: int, seconds: list[float], nbytes: int) -> dict[str, Any]:
    rates = sorted(count / s for s in seconds)
    fps = rates[len(rates) // 2]
    return {
        "frames": count,
        "seconds": seconds,
        "frames_per_s": fps,
        "mb_per_s": fps * nbytes / 1e6,
        "all_frames_per_s": rates,
    }


def compare(
    runners: dict[str, Callable[[np.ndarray, int], float]],
    duration: float,
    repeats: int,
    max_bytes: int,
) -> list[dict[str, Any]]:
    """Rates of every runner at every payload size; their runs alternate (noise hits all)."""
    rows = []
    for label, nbytes in PAYLOADS:
        array = payload_array(nbytes)
        counts = {
            name: calibrated_count(
                functools.partial(_swap, run, array), nbytes, duration, max_bytes
            )
            for name, run in runners.items()
        }
        seconds: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(repeats):
            for name, run in runners.items():
                seconds[name].append(run(array, counts[name]))
        row: dict[str, Any] = {"payload": label, "bytes": nbytes}
        for name in runners:
            row[name] = _summary(counts[name], seconds[name], nbytes)
        row["ratio"] = row["streamvis"]["frames_per_s"] / row["bare"]["frames_per_s"]
        if "bare_keep" in row:
            row["ratio_keep"] = row["streamvis"]["frames_per_s"] / row["bare_keep"]["frames_per_s"]
        rows.append(row)
        rates = ", ".join(f"{name} {row[name]['frames_per_s']:,.0f}/s" for name in runners)
        print(f"  {label}: {rates}", flush=True)
    return rows


def threads_setup(args: argparse.Namespace, duration: float, repeats: int) -> dict[str, Any]:
    """Both servers on a thread of this process (the comparison the targets use)."""
    max_bytes = 64 * 2**20 if args.smoke else 768 * 2**20
    bare, keeper = BareServer(), BareServer(keep=True)
    try:
        with serve_in_thread(ingest_port=0, bokeh_port=0, run_name=RUN) as server:
            client = Client(f"127.0.0.1:{server.ingest_port}", RUN, exit_timeout=30)
            try:
                rows = compare(
                    {
                        "bare": lambda a, n: bare_run(bare.port, a, n, bare),
                        "bare_keep": lambda a, n: bare_run(keeper.port, a, n, keeper),
                        "streamvis": lambda a, n: streamvis_run(client, a, n, server),
                    },
                    duration,
                    repeats,
                    max_bytes,
                )
                storing = storing_cost(rows, max_bytes // 2)
                replace_rows = []
                for label, nbytes in PAYLOADS[1:3]:
                    count = 20_000 if nbytes < 2**16 else 2_000
                    r = replace_run(
                        server, client, payload_array(nbytes), count // 10 if args.smoke else count
                    )
                    replace_rows.append({"payload": label, "bytes": nbytes, **r})
            finally:
                client.close(timeout=30)
    finally:
        bare.close()
        keeper.close()
    return {"rows": rows, "replace": replace_rows, "storing": storing}


@contextlib.contextmanager
def bare_process(*args: str) -> Iterator[int]:
    """A bare server (``--bare-server`` with ``args``) in a process of its own: its port."""
    bare = subprocess.Popen(
        [sys.executable, __file__, "--bare-server", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert bare.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(bare.stdout, selectors.EVENT_READ)
            if not selector.select(30):
                raise RuntimeError("the bare server process did not start in 30 s")
        yield int(bare.stdout.readline())
    finally:
        if bare.stdin is not None:
            bare.stdin.close()
        try:
            bare.wait(10)
        except subprocess.TimeoutExpired:
            bare.kill()
            bare.wait(5)


def processes_setup(args: argparse.Namespace, duration: float) -> dict[str, Any]:
    """Each server in its own process, as deployed."""
    max_bytes = 64 * 2**20 if args.smoke else 512 * 2**20
    # As deployed, the server stores every frame in its data folder; --no_persist does not.
    with (
        tempfile.TemporaryDirectory() as folder,
        bare_process() as port,
        bare_process(str(Path(folder) / "frames")) as writing,
        _common.ServerProcess(RUN) as server,
        _common.ServerProcess(RUN, args=("--no_persist",)) as memory,
        Client(server.address, RUN, exit_timeout=30) as client,
        Client(memory.address, RUN, exit_timeout=30) as in_memory,
    ):
        rows = compare(
            {
                "bare": lambda a, n: bare_run(port, a, n),
                "bare_write": lambda a, n: bare_run(writing, a, n),
                "streamvis": lambda a, n: streamvis_run(client, a, n),
                "no_persist": lambda a, n: streamvis_run(in_memory, a, n),
            },
            duration,
            1,
            max_bytes,
        )
    for row in rows:
        rate = {key: row[key]["frames_per_s"] for key in ("bare", "bare_write", "no_persist")}
        row["persist_ratio"] = row["streamvis"]["frames_per_s"] / rate["no_persist"]
        row["write_ratio"] = rate["bare_write"] / rate["bare"]
    return {"rows": rows}


def bare_server_process() -> None:
    """Serve bare frames until stdin closes (at most 15 minutes); print the port first.
    With a path after ``--bare-server``, write each message to it."""
    server = BareServer(write=Path(sys.argv[2]) if len(sys.argv) > 2 else None)
    print(server.port, flush=True)
    with selectors.DefaultSelector() as selector:
        selector.register(sys.stdin, selectors.EVENT_READ)
        selector.select(900)
    server.close()


def _rate_rows(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out = []
    for r in rows:
        row: tuple[Any, ...] = (
            r["payload"],
            r["bare"]["frames_per_s"],
            r["bare"]["mb_per_s"],
            r["streamvis"]["frames_per_s"],
            r["streamvis"]["mb_per_s"],
            r["ratio"],
        )
        if "bare_keep" in r:
            row += (r["bare_keep"]["frames_per_s"], r["bare_keep"]["mb_per_s"], r["ratio_keep"])
        out.append(row)
    return out


RATE_HEADERS = ("payload", "bare frames/s", "bare MB/s", "sv frames/s", "sv MB/s", "sv/bare")
KEEP_HEADERS = ("keep frames/s", "keep MB/s", "sv/keep")


def main() -> None:
    """Run the bare limit and streamvis ingest for every payload; print and save."""
    if sys.argv[1:2] == ["--bare-server"]:
        bare_server_process()
        return
    args = _common.parse_args(__doc__.splitlines()[0])
    duration, repeats = (0.15, 1) if args.smoke else (0.6, 3)
    print("threads: both servers on a thread of this process", flush=True)
    threads = threads_setup(args, duration, repeats)
    print("processes: both servers in their own process", flush=True)
    processes = processes_setup(args, duration)

    _common.report(
        "ingest, servers on a thread (GIL shared): bare websockets vs streamvis, append=True",
        RATE_HEADERS + KEEP_HEADERS,
        _rate_rows(threads["rows"]),
    )
    _common.report(
        "storing: writing each payload once into new memory (page faults) vs the bare "
        "limit's whole cost, per frame",
        ("payload", "new memory MB/s", "µs/frame", "bare µs/frame", "sv/bare"),
        [
            (
                r["payload"],
                r["fresh_mb_per_s"],
                r["fresh_us_per_frame"],
                r["bare_us_per_frame"],
                r["ratio"],
            )
            for r in threads["storing"]
        ],
    )
    _common.report(
        "replace mode (append=False; the client coalesces queued replaces), servers on a thread",
        ("payload", "calls", "calls/s", "frames sent", "frames applied", "sent frames/s"),
        [
            (
                r["payload"],
                r["calls"],
                r["calls"] / r["seconds"],
                r["frames_sent"],
                r["frames_applied"],
                r["frames_sent"] / r["seconds"] if r["frames_sent"] is not None else None,
            )
            for r in threads["replace"]
        ],
    )
    _common.report(
        "ingest, servers in their own process: bare, bare writing every message to a file, "
        "streamvis_server storing every frame (as deployed) and with --no_persist, append=True",
        ("payload", "bare frames/s", "bare+write", "write/bare", "sv frames/s", "sv MB/s",
         "no_persist", "sv/no_persist"),
        [
            (r["payload"], r["bare"]["frames_per_s"], r["bare_write"]["frames_per_s"],
             r["write_ratio"], r["streamvis"]["frames_per_s"], r["streamvis"]["mb_per_s"],
             r["no_persist"]["frames_per_s"], r["persist_ratio"])
            for r in processes["rows"]
        ],
    )  # fmt: skip
    targets = []
    for r in processes["rows"]:
        if r["bytes"] in (64, 256 * 1024):
            detail = (
                f"{r['streamvis']['frames_per_s']:,.0f} vs {r['no_persist']['frames_per_s']:,.0f}"
                f" frames/s; a bare server writing them: {r['write_ratio']:.2f}x of bare"
            )
            name = f"storing ingest vs --no_persist, {r['payload']}"
            targets.append(_common.target(name, r["persist_ratio"], ">=", 0.8, "x", detail))
    for r in threads["rows"]:
        if r["bytes"] <= 4096:
            name, need = f"ingest frames/s vs bare, {r['payload']}", 0.5
        else:
            name, need = f"ingest MB/s vs bare, {r['payload']}", 0.7
        detail = (
            f"{r['streamvis']['frames_per_s']:,.0f} vs {r['bare']['frames_per_s']:,.0f} frames/s"
        )
        targets.append(_common.target(name, r["ratio"], ">=", need, "x", detail))
    print(
        "keep: the bare server also copies each array and keeps it, as storing appended data "
        "needs at least (informational)"
    )
    notes = [
        "bare: websockets client (main thread) -> websockets server (own thread and loop), "
        "msgpack header + np.frombuffer, frames dropped",
        "keep: the same bare server, but it copies each array and keeps it until the next run",
        "streamvis: Client (caller thread + sender thread) -> StreamvisServer (serve_in_thread), "
        "frames applied to RunState; timed from the first call until flush() returns",
        "storing: copying each payload into new memory and keeping it, as a server that "
        "keeps appends must at least (informational)",
        "the vs-bare targets use the threads setup (one process, the GIL shared by client and "
        "server); the processes setup runs each server as its own process: streamvis_server "
        "with its default data folder (every frame stored before it is acknowledged) and "
        "with --no_persist; bare+write: the bare server also appends each message and its "
        "crc32 to a file, on its loop",
        f"medians over {repeats} runs of a calibrated frame count (~{duration} s each)",
    ]
    _common.finish(
        args.out,
        "transport",
        targets,
        smoke=args.smoke,
        threads=threads,
        processes=processes,
        notes=notes,
    )


if __name__ == "__main__":
    main()
