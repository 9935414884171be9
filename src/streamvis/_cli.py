"""``streamvis_server``: run the server from the command line."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from ._errors import StreamvisError
from ._protocol import Limits
from ._runstore import DEFAULT_BUDGET
from ._server import StreamvisServer

__all__ = ["keep_freed_memory", "main", "parse_args"]

log = logging.getLogger("streamvis.server")

# glibc's mallopt parameters, and what the server's process asks of them: blocks under 16 MiB
# from the heap, not mmap; up to 64 MiB of freed memory kept at its top, 16 MiB more taken
# at a time.
_MALLOPT = {-3: 16 << 20, -1: 64 << 20, -2: 16 << 20}  # M_MMAP_THRESHOLD, M_TRIM, M_TOP_PAD


def parse_args(
    argv: Sequence[str] | None = None, prog: str = "streamvis_server"
) -> argparse.Namespace:
    """Parse the command line (flags as in the seed: --rest_port, --bokeh_port, --run_name)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve live Bokeh plots of the arrays that streamvis clients send.",
    )
    parser.add_argument(
        "--rest_port", type=int, default=8080, help="ingest port clients connect to (default 8080)"
    )
    parser.add_argument(
        "--bokeh_port", type=int, default=5006, help="port of the pages to open (default 5006)"
    )
    parser.add_argument(
        "--run_name", default="default", help="run shown at / (others at /?run=NAME)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--token_file",
        metavar="PATH",
        help="file whose first line is the token every endpoint then asks for "
        "(or set STREAMVIS_TOKEN); needed unless --host is loopback",
    )
    parser.add_argument(
        "--token",
        help="the token itself (shown to every user of `ps`: prefer STREAMVIS_TOKEN "
        "or --token_file)",
    )
    parser.add_argument(
        "--allow_websocket_origin",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="extra origin allowed to open pages' websockets (repeatable)",
    )
    parser.add_argument(
        "--data_dir",
        default="streamvis_data",
        help="folder of the runs' logs, replayed at start (default ./streamvis_data)",
    )
    parser.add_argument(
        "--no_persist", action="store_true", help="keep runs in memory only; nothing is written"
    )
    parser.add_argument(
        "--max_run_gb",
        type=float,
        default=DEFAULT_BUDGET / 2**30,
        help="disk a run's history may take before it is thinned, in GiB (default %(default)g)",
    )
    parser.add_argument(
        "--max_frame_mb",
        type=float,
        default=256,
        help="largest frame accepted, in MiB (default 256)",
    )
    parser.add_argument(
        "--log_level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="logging level (default INFO)",
    )
    args = parser.parse_args(argv)
    args.token = _token(parser, args)
    return args


def _token(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """The token from --token_file, --token or STREAMVIS_TOKEN (in that order)."""
    if args.token_file is not None:
        try:
            lines = Path(args.token_file).read_text().splitlines()
        except OSError as exc:
            parser.error(f"--token_file {args.token_file!r}: {exc.strerror or exc}")
        token = lines[0].strip() if lines else ""
        if not token:
            parser.error(f"--token_file {args.token_file!r} is empty: write the token in it")
        return token
    if args.token is not None:
        print(
            "streamvis_server: --token shows the token to every user of `ps`; "
            "prefer STREAMVIS_TOKEN or --token_file",
            file=sys.stderr,
        )
        return str(args.token) or None
    return os.environ.get("STREAMVIS_TOKEN") or None


def keep_freed_memory() -> bool:
    """Have the C allocator keep freed memory for reuse (glibc; False elsewhere). Memory
    fresh from the kernel costs a page fault a page (1-2.5 us here): numpy's temporaries of
    a few MB, new for every image drawn, made the drawing 2.5x slower than reused memory.
    Each of the allocator's arenas (one a busy thread) may keep up to 80 MiB freed."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc's; musl's says 0 (does nothing)
    except (AttributeError, OSError):  # no such function, or no C library to open
        return False
    done = [mallopt(option, value) == 1 for option, value in _MALLOPT.items()]
    log.debug("allocator tuned to keep freed memory: %s", done)
    return all(done)


def main(argv: Sequence[str] | None = None, prog: str = "streamvis_server") -> int:
    """Entry point of ``streamvis_server`` (and ``streamvis serve``)."""
    args = parse_args(argv, prog)
    # The writer and drawing threads hand the GIL back and forth with the event loop at every
    # SQLite step and numpy call; 5 ms (the default) for each hand-back starves them.
    sys.setswitchinterval(0.0005)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    keep_freed_memory()
    try:
        server = StreamvisServer(
            host=args.host,
            ingest_port=args.rest_port,
            bokeh_port=args.bokeh_port,
            run_name=args.run_name,
            data_dir=None if args.no_persist else args.data_dir,
            limits=Limits(max_frame_bytes=int(args.max_frame_mb * 2**20)),
            token=args.token,
            allow_websocket_origin=args.allow_websocket_origin,
            max_run_bytes=int(args.max_run_gb * 2**30),
        )
    except StreamvisError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        assert main_task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):  # both stop cleanly: logs written, closed
            loop.add_signal_handler(sig, main_task.cancel)
        await server.start()
        print(
            f"streamvis: open {server.url}  "
            f"(clients: Client('{args.host}:{server.ingest_port}', RUN))",
            flush=True,
        )
        await server.serve_forever()

    try:
        asyncio.run(serve())
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    except OSError as exc:
        print(
            f"{prog}: cannot listen: {exc} (is another server on these ports?)",
            file=sys.stderr,
        )
        return 1
    print("streamvis: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
