"""Fixtures: a real server on 127.0.0.1 (ephemeral ports), real clients, a real Chromium."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streamvis import Client
from streamvis._server import StreamvisServer, serve_in_thread

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))

from browser import Page, find_chromium


@pytest.fixture
def server() -> Iterator[StreamvisServer]:
    """A server on its own thread, both ports ephemeral, showing run 'test' at /."""
    with serve_in_thread(ingest_port=0, bokeh_port=0, run_name="test", update_interval=0.02) as srv:
        yield srv


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[StreamvisServer]:
    """A persisting server (its runs in ``tmp_path``), showing run 'steps' at /: its runs'
    history is there to read and move through."""
    with serve_in_thread(
        ingest_port=0, bokeh_port=0, run_name="steps", data_dir=tmp_path, update_interval=0.02
    ) as srv:
        yield srv


@pytest.fixture
def connect(server: StreamvisServer) -> Iterator[Callable[..., Client]]:
    """Make clients of ``server``; each is closed at teardown."""
    clients: list[Client] = []

    def make(run: str = "test", **kwargs: object) -> Client:
        client = Client(f"127.0.0.1:{server.ingest_port}", run, exit_timeout=5.0, **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=5.0)


@pytest.fixture
def browser() -> Iterator[Callable[[], Page]]:
    """Open headless Chromium pages (Debian's chromium; `make test` installs it)."""
    if find_chromium() is None:
        pytest.fail(
            "browser tests need /usr/bin/chromium and /usr/bin/chromedriver: run `make test`"
        )
    pages: list[Page] = []

    def make() -> Page:
        page = Page()
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()
