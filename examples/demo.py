"""`make demo`: start a streamvis server and the swissroll example, print the URL to open."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait until something listens on 127.0.0.1:``port`` (or the server process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server exited with code {proc.returncode}; see its messages above")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    sys.exit(f"the server did not listen on port {port} within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rest_port", type=int, default=8080)
    parser.add_argument("--bokeh_port", type=int, default=5006)
    parser.add_argument("--steps", type=int, default=100000)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamvis.cli", "--rest_port", str(args.rest_port),
         "--bokeh_port", str(args.bokeh_port), "--run_name", "swissroll", "--log_level", "WARNING"],
    )  # fmt: skip
    try:
        wait_for_port(args.bokeh_port, server)
        wait_for_port(args.rest_port, server)
        print(
            f"\n  streamvis demo: open http://localhost:{args.bokeh_port}/  (Ctrl-C stops)\n",
            flush=True,
        )
        subprocess.run(
            [
                sys.executable,
                str(HERE / "swissroll.py"),
                f"localhost:{args.rest_port}",
                "--steps",
                str(args.steps),
            ],
            check=False,
        )
    except KeyboardInterrupt:
        pass
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
