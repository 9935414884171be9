"""Live plots in a notebook, run by a real Jupyter kernel through nbclient: ``serve`` starts a
server in the kernel, a training loop in the notebook sends to it, and ``show`` puts the
live dashboard in the output, which a real browser then shows, updating."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from browser import Page

nbformat: Any = pytest.importorskip("nbformat")
nbclient: Any = pytest.importorskip("nbclient")

START = """
import numpy as np
import streamvis
from streamvis import Client
served = streamvis.serve("nb", data_dir=None{token})
client = Client(served.ingest, "nb"{client_token})
client.set_layout({{"loss": (0, 0, 1, 1)}})
"""
STEPS = """
for step in range({first}, {last}):
    client.tandem_lines("loss", step, np.array([step * 0.5]))
assert client.flush(timeout=10)
"""


@pytest.fixture
def kernel() -> Iterator[Callable[[str], list[dict[str, Any]]]]:
    """Run code in a real kernel, a cell at a time; each cell's outputs."""
    notebook = nbformat.v4.new_notebook()
    runner = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3")
    with runner.setup_kernel():

        def run(code: str) -> list[dict[str, Any]]:
            cell = nbformat.v4.new_code_cell(code)
            notebook.cells.append(cell)
            runner.execute_cell(cell, len(notebook.cells) - 1)
            return list(cell.outputs)

        yield run
        run("served.stop()")


def html_of(outputs: list[dict[str, Any]]) -> str:
    """The HTML a cell's output shows."""
    return str(next(o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})))


def shown(outputs: list[dict[str, Any]]) -> str:
    """The address of the frame a cell's output shows."""
    found = re.search(r'src="([^"]+)"', html_of(outputs))
    assert found is not None, outputs
    return found.group(1).replace("&amp;", "&")


def in_frame(page: Page, outputs: list[dict[str, Any]], folder: Path) -> Page:
    """``page`` showing a cell's output as a notebook does (from a file: another site),
    inside its frame."""
    (folder / "output.html").write_text(f"<!doctype html><body>{html_of(outputs)}</body>")
    page.open((folder / "output.html").as_uri())
    page.driver.switch_to.frame(page.driver.find_element("tag name", "iframe"))
    return page


def test_a_notebook_shows_its_own_servers_live_plot(
    kernel: Callable[[str], list[dict[str, Any]]], browser: Callable[[], Page], tmp_path: Path
) -> None:
    kernel(START.format(token="", client_token=""))
    kernel(STEPS.format(first=0, last=10))
    page = in_frame(browser(), kernel('streamvis.show("nb", served)'), tmp_path)
    assert page.wait_for_line_length("loss", 10) == list(range(10))
    assert page.line("loss", 0)[1] == [s * 0.5 for s in range(10)]
    kernel(STEPS.format(first=10, last=12))  # the loop goes on: the output follows
    assert page.wait_for_line_length("loss", 12)[-1] == 11


def test_a_server_with_a_token_is_shown_with_it(
    kernel: Callable[[str], list[dict[str, Any]]], browser: Callable[[], Page], tmp_path: Path
) -> None:
    kernel(START.format(token=', token="s3cret"', client_token=', token="s3cret"'))
    kernel(STEPS.format(first=0, last=5))
    outputs = kernel('streamvis.show("nb", served, x="time")')
    url = shown(outputs)
    assert "token=s3cret" in url and "x=time" in url
    page = browser()
    page.open(url.replace("token=s3cret", "token=wrong"))
    assert "needs its token" in page.driver.page_source
    page.open(url)  # the address itself
    assert page.wait_for_line_length("loss", 5) == list(range(5))
    framed = in_frame(browser(), outputs, tmp_path)  # another site's frame: no cookie
    assert framed.wait_for_line_length("loss", 5) == list(range(5))
    kernel(STEPS.format(first=5, last=7))  # and live
    assert framed.wait_for_line_length("loss", 7)[-1] == 6
