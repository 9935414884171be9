"""Start-up of a server on big stored runs: ports, a page's first data, memory, history reads.

Issue #13's targets: start-up does not replay history, and memory is a cache. With a stored
run of 1e6 ``tandem_lines`` steps x 40 lines, and with one of 1 GiB of 256 KiB
``multi_lines`` appends, a fresh server's ports accept connections < 1 s after its process
starts and a page shows the run's data < 3 s after; its RSS (peak, and with the page
showing data) stays < 300 MB. With 2,000 steps of a 256 KiB replace plot in a run's
history: RSS < 300 MB, and any one of those steps reads back from the store in < 20 ms.

Each run is built the realistic way: a persisting ``python -m streamvis`` (its own
process) on a temporary data folder, a real ``Client`` sending, ``flush()``, SIGTERM. Then
a fresh server starts on the same folder: timed from just before its process starts to
both ports accepting a TCP connection, to its "open" line, to its log's "loaded run" line
(how many frames it read), and to headless Chromium (started beforehand, blank) showing the
run's data: the tandem plot's source holds its 40 lines' values; a multi_lines plot's holds
the image drawn for its view (``image_draw.IMAGE_JS``). The replace run's steps are read with
``RunStore.latest_at`` on its database file while that server runs (the file was just
written, so it is in the page cache). A server on an empty folder gives the floor (imports).
Smoke: 20k steps, 64 appends, 50 replaces.
"""

from __future__ import annotations

import math
import re
import shutil
import socket
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

import _common
from browser import Page
from image_draw import IMAGE_JS
from streamvis import Client
from streamvis._runstore import RunStore

LINES, POINTS = 64, 512  # a multi_lines frame: (64, 512, 2) float32 = 256 KiB
TANDEM_LINES = 40
SIZES = {"tandem": 1_000_000, "appends": 4096, "replace": 2000}  # steps, appends, replaces
SMOKE_SIZES = {"tandem": 20_000, "appends": 64, "replace": 50}
PLOT = {"tandem": "loss", "appends": "segs", "replace": "segs"}
WHAT = {"tandem": "{:,} steps x 40 lines", "appends": "{:,} appends of 256 KiB",
        "replace": "{:,} replaces of 256 KiB"}  # fmt: skip
READS = 200  # random latest_at calls
# [points of line 0, its largest x] once the tandem plot's source holds its lines, else false.
LINES_JS = """(() => {
  const doc = Bokeh.documents[0], s = doc && doc.get_model_by_name('loss');
  if (!s || !s.data.ys || s.data.ys.length !== arguments[0] || !s.data.ys[0].length) return false;
  const xs = Array.from(s.data.xs[0]);
  return [xs.length, Math.max(...xs)];
})()"""
LOADED = re.compile(r"^(\S+ \S+) INFO streamvis\.server: loaded run '[^']+': (\d+) frames", re.M)


class TimedServer(_common.ServerProcess):
    """A server (logging at INFO) on ``data_dir``, its start-up timed from just before its
    process starts: to both ports accepting connections, then to its "open" line."""

    def __init__(self, run: str, data_dir: Path) -> None:
        self.started = time.time()  # wall clock, as the server's log lines are stamped
        self.t0 = time.perf_counter()
        self.ports_s = self.open_s = math.nan
        args = ("--data_dir", str(data_dir), "--log_level", "INFO")
        # Ports chosen here, not by the server: their opening is what is timed.
        ports = (_common.free_port(), _common.free_port())
        super().__init__(run, timeout=60, args=args, ports=ports)

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.perf_counter() + timeout
        waiting = {self.ingest_port, self.bokeh_port}
        while waiting and time.perf_counter() < deadline and self.proc.poll() is None:
            for port in sorted(waiting):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    waiting.discard(port)
                except OSError:
                    time.sleep(0.002)
        if waiting:
            return False
        self.ports_s = time.perf_counter() - self.t0
        ready = super()._wait_ready(deadline - time.perf_counter())
        self.open_s = time.perf_counter() - self.t0
        return ready

    def lines(self) -> list[str]:
        """The server's own log lines (streamvis loggers, not Bokeh's or tornado's)."""
        return [line for line in self.log().splitlines() if " streamvis" in line]

    def loaded(self) -> tuple[float, int]:
        """Seconds from the start to the log's "loaded run" line, and the frames it read."""
        found = LOADED.search("\n".join(self.lines()))
        if found is None:
            return math.nan, -1
        stamp = datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        return stamp - self.started, int(found[2])


def send(client: Client, kind: str, size: int) -> None:
    """Send run ``kind``: tandem steps, or 256 KiB multi_lines appends or replaces."""
    rng = np.random.default_rng(0)
    if kind == "tandem":
        phases = np.linspace(0, 2 * np.pi, TANDEM_LINES, dtype=np.float32)
        for step in range(size):
            client.tandem_lines("loss", step, np.sin(np.float32(step * 1e-4) + phases))
            if step % 50_000 == 49_999 and not client.flush(timeout=300):
                raise RuntimeError(f"step {step} was not acknowledged within 300 s")
        return
    frame = np.empty((LINES, POINTS, 2), np.float32)
    y = np.zeros(LINES, np.float32)
    append = kind == "appends"
    for i in range(size):
        first = i * POINTS if append else 0
        frame[:, :, 0] = np.arange(first, first + POINTS, dtype=np.float32)
        walk = rng.standard_normal((LINES, POINTS), dtype=np.float32).cumsum(axis=1)
        frame[:, :, 1] = y[:, None] + walk
        if append:
            y = frame[:, -1, 1].copy()
        client.multi_lines("segs", frame, line_dims=(0,), spatial_dim=2, append=append)
        # A replace still queued is superseded by the next (replace_interval=0 or not): a
        # replace is flushed as sent, as a loop at its own pace would find it sent.
        if (not append or i % 32 == 31) and not client.flush(timeout=300):
            raise RuntimeError(f"frame {i} was not acknowledged within 300 s")


def build(kind: str, size: int, data_dir: Path) -> dict[str, Any]:
    """Store run ``kind`` through a real server and client; the seconds it took, its size."""
    print(f"building run {kind!r} ({size:,} calls)", flush=True)
    args = ("--data_dir", str(data_dir))
    with _common.ServerProcess(kind, timeout=60, args=args) as server:
        client = Client(server.address, kind, exit_timeout=60, replace_interval=0)
        client.set_layout({PLOT[kind]: (0, 0, 1, 1)})
        start = time.perf_counter()
        send(client, kind, size)
        if not client.flush(timeout=600):
            raise RuntimeError(f"run {kind!r} was not acknowledged within 600 s")
        seconds = time.perf_counter() - start
        client.close(timeout=60)
        stopping = time.perf_counter()
    files = [data_dir / "runs" / f"{kind}.sqlite{end}" for end in ("", "-wal")]
    return {
        "calls": size,
        "seconds": seconds,
        "calls_per_s": size / seconds,
        "stop_s": time.perf_counter() - stopping,
        "db_mb": sum(f.stat().st_size for f in files if f.exists()) / 1e6,
    }


def reads(path: Path, plot: str) -> dict[str, Any]:
    """Time ``RunStore.latest_at`` of random stored steps of ``plot`` (ms)."""
    store = RunStore(path)
    try:
        start = time.perf_counter()
        ids = [stored.id for stored in store.frames(plot)]
        listed_ms = (time.perf_counter() - start) * 1000
        ms = []
        for frame_id in np.random.default_rng(1).choice(ids, READS):
            start = time.perf_counter()
            stored = store.latest_at(plot, int(frame_id))
            ms.append((time.perf_counter() - start) * 1000)
            assert stored is not None and stored.id == frame_id, (frame_id, stored)
    finally:
        store.close()
    return {
        "stored_steps": len(ids),
        "frames_ms": listed_ms,
        "reads": len(ms),
        "p50_ms": _common.percentile(ms, 50),
        "p99_ms": _common.percentile(ms, 99),
        "max_ms": max(ms),
    }


def start_up(page: Page, kind: str, data_dir: Path, timeout: float) -> dict[str, Any]:
    """Start a server on ``data_dir`` and open run ``kind``'s page as soon as its ports
    accept: the start-up's phases in seconds, server memory, and (replace) history reads."""
    page.open("about:blank")
    shown = IMAGE_JS if kind != "tandem" else LINES_JS
    server = TimedServer(kind, data_dir)
    with server:
        page.open(server.url(kind))
        plot_s = math.nan  # to the page's source of the plot (an image's: still blank)
        try:
            page.wait_for(f"Bokeh.documents[0].get_model_by_name('{PLOT[kind]}')")
            plot_s = time.perf_counter() - server.t0
            what = page.wait_for(shown, TANDEM_LINES, timeout=timeout)
        except TimeoutError as exc:
            print(f"run {kind!r}: no data shown: {exc}", flush=True)
            what = None
        data_s = time.perf_counter() - server.t0 if what is not None else math.nan
        time.sleep(1.0)  # the page settles (a first image, its echo)
        memory = server.memory()
        loaded_s, frames = server.loaded()
        lines = server.lines()
        path = data_dir / "runs" / f"{kind}.sqlite"
        history = reads(path, PLOT[kind]) if kind == "replace" else {}
        page.open("about:blank")
    return {
        "ports_s": server.ports_s,
        "open_line_s": server.open_s,
        "loaded_s": loaded_s,
        "frames_read": frames,
        "plot_s": plot_s,
        "data_s": data_s,
        "shown": what,
        "rss_mb": memory["VmRSS"],
        "peak_mb": memory["VmHWM"],
        "history": history,
        "log": lines,
    }


def main() -> None:
    """Build each run, start a fresh server on it, print and save."""
    args = _common.parse_args(__doc__.splitlines()[0])
    sizes, timeout = (SMOKE_SIZES, 30.0) if args.smoke else (SIZES, 120.0)
    built: dict[str, dict[str, Any]] = {}
    started: dict[str, dict[str, Any]] = {}
    with Page(timeout=60) as page:
        for kind, size in sizes.items():
            data_dir = Path(tempfile.mkdtemp(prefix="streamvis-bench-startup-"))
            try:
                built[kind] = build(kind, size, data_dir)
                print(f"starting a server on run {kind!r}", flush=True)
                started[kind] = start_up(page, kind, data_dir, timeout)
            finally:
                shutil.rmtree(data_dir, ignore_errors=True)
        empty = Path(tempfile.mkdtemp(prefix="streamvis-bench-startup-"))
        try:  # the floor: imports, binding
            floor = TimedServer("empty", empty)
            with floor:
                started["empty"] = {"ports_s": floor.ports_s, "open_line_s": floor.open_s}
        finally:
            shutil.rmtree(empty, ignore_errors=True)
    what = {kind: WHAT[kind].format(size) for kind, size in sizes.items()}
    _common.report(
        "building each run (a persisting server process, a Client, flush(), SIGTERM)",
        ("run", "calls", "seconds", "calls/s", "stop s", "database MB"),
        [(what[k], b["calls"], b["seconds"], b["calls_per_s"], b["stop_s"], b["db_mb"])
         for k, b in built.items()],
    )  # fmt: skip
    _common.report(
        "start-up on each run: seconds from just before the server's process starts",
        ("run", "ports accept", "'open' line", "run loaded", "frames read", "page plot",
         "page data", "RSS MB", "peak MB"),
        [(what.get(k, "empty data folder"), s["ports_s"], s["open_line_s"], s.get("loaded_s"),
          s.get("frames_read"), s.get("plot_s"), s.get("data_s"), s.get("rss_mb"),
          s.get("peak_mb"))
         for k, s in started.items()],
    )  # fmt: skip
    history = started["replace"]["history"]
    _common.report(
        f"RunStore.latest_at of {READS} random steps of the replace plot, server running",
        ("stored steps", "frames() ms", "p50 ms", "p99 ms", "max ms"),
        [(history["stored_steps"], history["frames_ms"], history["p50_ms"], history["p99_ms"],
          history["max_ms"])],
    )  # fmt: skip
    for kind in ("tandem", "appends", "replace"):
        print(f"run {kind!r}: the page showed {started[kind]['shown']}; server log:")
        print("\n".join(f"  {line}" for line in started[kind]["log"]))
    targets = []
    for kind in ("tandem", "appends", "replace"):
        s, name = started[kind], what[kind]
        if kind != "replace":
            targets += [
                _common.target(f"{kind}: ports accept", s["ports_s"], "<", 1, "s", name),
                _common.target(f"{kind}: page shows data", s["data_s"], "<", 3, "s", name),
            ]
        detail = f"{name}; {s['rss_mb']:.0f} MB with the page showing data"
        targets.append(_common.target(f"{kind}: server peak RSS", s["peak_mb"], "<", 300, "MB",
                                      detail))  # fmt: skip
    detail = f"{history['reads']} random steps of {history['stored_steps']:,} stored"
    targets.append(_common.target("replace: read one step (max)", history["max_ms"], "<", 20,
                                  "ms", detail))  # fmt: skip
    _common.finish(
        args.out,
        "startup",
        targets,
        smoke=args.smoke,
        sizes=sizes,
        built=built,
        started=started,
        notes=[
            "each run built by a persisting python -m streamvis and a Client, then a fresh "
            "server started on the same data folder; times from just before its Popen",
            "ports accept: a TCP connect to both ports succeeds (polled every 2 ms); Chromium, "
            "started beforehand, opens the page then; page plot: its source of the plot exists "
            "(an image's still blank); page data: it holds the run's data (polled every 50 ms)",
            "peak MB: the server's VmHWM since its start, read 1 s after the page showed data",
            "latest_at reads: the database was just written, so it is in the page cache",
        ],
    )


if __name__ == "__main__":
    main()
