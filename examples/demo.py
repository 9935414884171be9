"""`make demo`: start a streamvis server and the swissroll example, print the URL to open."""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
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
    data_dir = tempfile.mkdtemp(prefix="streamvis-demo-")  # each demo starts from a clean run
    ports = ["--rest_port", str(args.rest_port), "--bokeh_port", str(args.bokeh_port)]
    options = ["--run_name", "swissroll", "--log_level", "WARNING", "--data_dir", data_dir]
    server = subprocess.Popen([sys.executable, "-m", "streamvis", *ports, *options])
    children = [server]
    try:
        wait_for_port(args.bokeh_port, server)
        wait_for_port(args.rest_port, server)
        print(
            f"\n  streamvis demo: open http://localhost:{args.bokeh_port}/  (Ctrl-C stops)\n",
            flush=True,
        )
        example = [str(HERE / "swissroll.py"), f"localhost:{args.rest_port}"]
        children.append(subprocess.Popen([sys.executable, *example, "--steps", str(args.steps)]))
        children[-1].wait()
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            child.terminate()
            child.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
