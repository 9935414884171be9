"""Shared helpers of the benchmark scripts: arguments, tables, targets, RSS, results files."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
for _extra in (ROOT / "tests", ROOT / "examples"):
    if str(_extra) not in sys.path:
        sys.path.append(str(_extra))


def parse_args(
    description: str,
    argv: Sequence[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """Parse the flags every benchmark takes (``--smoke``, ``--out``) and ``extra`` ones."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="a tiny few-seconds version (CI)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON result")
    if extra is not None:
        extra(parser)
    return parser.parse_args(argv)


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile of ``values`` (nan if empty)."""
    array = np.asarray(values, dtype=np.float64)
    return float(np.percentile(array, q)) if array.size else math.nan


def fmt(value: Any, digits: int = 3) -> str:
    """Format a number for a table with ``digits`` significant digits; text as it is."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value != 0 and (abs(value) >= 10**digits or abs(value) < 10 ** -(digits - 1)):
            return f"{value:.{digits - 1}e}" if abs(value) < 1e-3 else f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Render ``rows`` under ``headers`` as an aligned plain-text table."""
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in cells:
        out.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(out)


def target(
    name: str, measured: float, op: str, threshold: float, unit: str = "", detail: str = ""
) -> dict[str, Any]:
    """A target check: ``measured op threshold`` where op is '>=', '<=' or '<'."""
    checks = {">=": measured >= threshold, "<=": measured <= threshold, "<": measured < threshold}
    passed = bool(checks[op]) and not math.isnan(measured)
    return {
        "name": name,
        "measured": measured,
        "op": op,
        "threshold": threshold,
        "unit": unit,
        "pass": passed,
        "detail": detail,
    }


def targets_table(targets: Sequence[dict[str, Any]]) -> str:
    """Render target checks as a PASS/FAIL table."""
    rows = [
        (
            "PASS" if t["pass"] else "FAIL",
            t["name"],
            f"{fmt(t['measured'])} {t['unit']}".strip(),
            f"{t['op']} {fmt(t['threshold'])} {t['unit']}".strip(),
            t["detail"],
        )
        for t in targets
    ]
    return table(("", "target", "measured", "needs", "detail"), rows)


def proc_status_mb(pid: int | str = "self") -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of process ``pid`` in MB, from /proc/PID/status."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


def cpu_seconds(pids: Sequence[int | str]) -> float:
    """User plus system CPU seconds of the processes ``pids`` (those gone count as 0)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def chromium_pids() -> list[int]:
    """Every running Chromium process: browser, renderers, GPU and utility processes (not
    chromedriver or the crash handler, which do no work for the page)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() == "chromium":
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    from importlib.metadata import version

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        **{name: version(name) for name in ("numpy", "bokeh", "websockets", "msgpack")},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_1min": os.getloadavg()[0],
        "git": _git_state(),
    }


def _git_state() -> str:
    """HEAD and whether src/ differs from it (src/ may be edited while benchmarks run)."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' + uncommitted src/ changes' if dirty else ''}"


def write_results(out: Path, name: str, data: dict[str, Any]) -> Path:
    """Write ``data`` (plus the environment) to ``out/NAME.json`` and return the path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    payload = {"benchmark": name, "env": environment(), **data}
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    return path


def finish(out: Path, name: str, targets: list[dict[str, Any]], **data: Any) -> None:
    """End a benchmark: print its targets, then write them and ``data`` to ``out/NAME.json``."""
    print()
    print(targets_table(targets))
    path = write_results(out, name, {**data, "targets": targets})
    print(f"\nwrote {path}")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def report(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a titled table."""
    print(f"\n== {title} ==")
    print(table(headers, rows), flush=True)


class ServerProcess:
    """``python -m streamvis`` on loopback ports, as its own process. By default the server
    picks free ports itself (port 0) and the ports are read from its "open" line, so two
    servers started together never race for one port."""

    OPEN = re.compile(r"open http://[^:/]+:(\d+)/.*Client\('[^']*:(\d+)'")

    def __init__(
        self,
        run_name: str = "default",
        timeout: float = 30.0,
        args: tuple[str, ...] = (),
        ports: tuple[int, int] = (0, 0),
    ) -> None:
        import subprocess
        import tempfile

        self.ingest_port, self.bokeh_port = ports
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in close())
        # The server's working directory: whatever it writes by default (say a data folder)
        # lands here and is deleted with it, never in the project.
        self.workdir = tempfile.mkdtemp(prefix="streamvis-bench-server-")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamvis",
                "--rest_port",
                str(self.ingest_port),
                "--bokeh_port",
                str(self.bokeh_port),
                "--run_name",
                run_name,
                "--log_level",
                "WARNING",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=self.workdir,
        )
        self.pid = self.proc.pid
        ready = self._wait_ready(timeout)
        if not ready:
            log = self.log()
            self.close()
            raise RuntimeError(f"streamvis server did not start in {timeout} s: {log[-2000:]}")

    def _wait_ready(self, timeout: float) -> bool:
        import selectors

        assert self.proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        try:
            for _ in range(10_000):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                if selector.select(min(left, 0.5)):
                    line = self.proc.stdout.readline()
                    opened = self.OPEN.search(line)
                    if opened:
                        self.bokeh_port, self.ingest_port = map(int, opened.groups())
                        return True
                    if not line:
                        return False
        finally:
            selector.close()
        return False

    @property
    def address(self) -> str:
        """``host:port`` for ``Client``."""
        return f"127.0.0.1:{self.ingest_port}"

    def url(self, run: str) -> str:
        """The page of run ``run``."""
        return f"http://127.0.0.1:{self.bokeh_port}/?run={run}"

    def memory(self) -> dict[str, float]:
        """VmRSS and VmHWM of the server process, in MB."""
        return proc_status_mb(self.pid)

    def log(self) -> str:
        """The server's stderr so far. Read with pread: a seek would move the offset the
        server's stderr writes at too."""
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def close(self) -> None:
        """Stop the server process (SIGTERM, then SIGKILL after 5 s)."""
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextmanager
def bokeh_app(make: Callable[[Any], None]) -> Iterator[int]:
    """A bare Bokeh server (no streamvis) of the app ``make`` builds, on its own thread and
    loop, on a free loopback port: yields the port."""
    import asyncio
    import threading

    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server
    from tornado.ioloop import IOLoop

    box: dict[str, Any] = {}
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        loop = IOLoop.current()
        server = Server({"/": Application(FunctionHandler(make))}, io_loop=loop, port=0,
                        address="127.0.0.1", allow_websocket_origin=["*"])  # fmt: skip
        server.start()
        box.update(server=server, loop=loop)
        ready.set()
        loop.start()
        server.stop()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the bare Bokeh server did not start within 30 s")
    try:
        yield box["server"].port
    finally:
        box["loop"].add_callback(box["loop"].stop)
        thread.join(10)


def load_example(name: str) -> Any:
    """Import ``examples/NAME.py`` as module ``NAME_example`` (benchmarks/ has same names)."""
    import importlib.util

    module_name = f"{name}_example"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
