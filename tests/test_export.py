"""A run leaves streamvis whole: ``read_run`` gives back the arrays sent, ``streamvis export``
writes every value to CSV, NPZ, Parquet and one HTML file that works from ``file://`` with
no server, and bad arguments get one line and a non-zero exit."""

from __future__ import annotations

import csv
import importlib
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import streamvis
from browser import Page
from streamvis import Client
from streamvis._server import StreamvisServer, serve_in_thread

STEPS = 40
LAYOUT = {"loss": (0, 0, 1, 1), "pts": (0, 1, 1, 1), "mu": (1, 0, 1, 2)}
COMMAND = str(Path(sys.executable).with_name("streamvis"))


def loss(step: int) -> np.ndarray:
    return np.array([step, -2.0 * step + 0.25], np.float32)


def pts(step: int) -> np.ndarray:
    return np.full((3, 2), float(step))


def sent(stored: StreamvisServer) -> None:
    """Run "r" sends STEPS steps of a line plot (labelled), a scatter and multi-lines."""
    with Client(f"127.0.0.1:{stored.ingest_port}", "r", exit_timeout=5) as client:
        client.set_layout(LAYOUT)
        for step in range(STEPS):
            client.tandem_lines("loss", step, loss(step), labels=["train", "eval"])
            client.scatter("pts", pts(step), spatial_dim=1, step=step)
            lines = np.arange(12, dtype=np.float64).reshape(3, 2, 2) * step
            client.multi_lines("mu", lines, line_dims=0, spatial_dim=2, step=step)
            assert client.flush(timeout=10)  # paced: every replace kept


@pytest.fixture
def writing(stored: StreamvisServer) -> Iterator[StreamvisServer]:
    """``stored`` with run "r" sent, and another run written to all the while."""
    sent(stored)
    stop = threading.Event()

    def other() -> None:
        with Client(f"127.0.0.1:{stored.ingest_port}", "busy", exit_timeout=5) as client:
            client.set_layout({"x": (0, 0, 1, 1)})
            for step in range(100_000):
                if stop.is_set():
                    break
                client.tandem_lines("x", step, np.zeros(4))
                client.flush(timeout=1)

    thread = threading.Thread(target=other)
    thread.start()
    yield stored
    stop.set()
    thread.join(timeout=30)


def export(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [COMMAND, "export", "--data_dir", str(data_dir), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


def fetches(text: str) -> list[str]:
    """What an HTML document's tags load from elsewhere (scripts, styles, images)."""

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.found += [v or "" for k, v in attrs if k in ("src", "href") and tag != "a"]

    parser = Tags()
    parser.feed(text)
    return parser.found


def test_read_run_gives_back_every_array_as_sent(writing: StreamvisServer, tmp_path: Path) -> None:
    run = streamvis.read_run(tmp_path, "r")  # the server's data folder
    assert list(run.plots) == ["loss", "pts", "mu"] and run.cells == LAYOUT
    line = run.plots["loss"]
    assert line.kind == "tandem_lines" and line.lines == ["train", "eval"]
    assert line.steps.tolist() == list(range(STEPS))
    assert np.all(np.diff(line.times) >= 0) and line.times[0] > 1.7e9  # when each was made
    for step, (x, ys) in enumerate(line.arrays):
        assert ys.dtype == np.float32 and np.array_equal(ys, loss(step)) and x == step
    scatter = run.plots["pts"]
    assert scatter.kind == "scatter" and len(scatter.arrays) == STEPS  # every replace kept
    assert all(np.array_equal(a[0], pts(s)) for s, a in enumerate(scatter.arrays))
    frame = line.to_pandas()
    assert list(frame.columns) == ["plot", "line", "step", "time", "value"]
    assert len(frame) == 2 * STEPS
    evals = frame[frame.line == "eval"]
    assert evals.value.tolist() == [float(loss(s)[1]) for s in range(STEPS)]
    some = streamvis.read_run(tmp_path, "r", plots=["pts"], steps=(10, 12))
    assert list(some.plots) == ["pts"] and some.plots["pts"].steps.tolist() == [10, 11, 12]


def test_every_format_holds_every_value_while_the_server_writes(
    writing: StreamvisServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for suffix in (".csv", ".npz", ".parquet"):
        done = export(tmp_path, "r", str(out / f"r{suffix}"))
        assert done.returncode == 0, done.stderr
        assert f"wrote {out / f'r{suffix}'}" in done.stdout
    with open(out / "r.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["plot", "line", "step", "time", "value"]
    expected = [
        ["loss", name, str(step), float(loss(step)[k])]
        for step in range(STEPS)
        for k, name in enumerate(("train", "eval"))
    ]
    assert [[p, line, s, float(v)] for p, line, s, _, v in rows[1:]] == expected
    npz = np.load(out / "r.npz")
    assert np.array_equal(npz["loss/values"], np.stack([loss(s) for s in range(STEPS)]))
    assert npz["loss/lines"].tolist() == ["train", "eval"]
    assert np.array_equal(npz["pts/data"], np.stack([pts(s) for s in range(STEPS)]))
    assert npz["mu/data"].shape == (STEPS, 3, 2, 2) and npz["mu/steps"].tolist() == list(
        range(STEPS)
    )
    parquet: Any = importlib.import_module("pyarrow.parquet")
    table = parquet.read_table(out / "r.parquet").to_pydict()
    assert table["value"] == [row[3] for row in expected]
    assert table["line"][:2] == ["train", "eval"] and table["step"][-1] == STEPS - 1


def test_bad_arguments_get_one_line_and_a_non_zero_exit(
    writing: StreamvisServer, tmp_path: Path
) -> None:
    folder = tmp_path
    for args, says in (
        (("nope", "a.csv"), "no run 'nope'"),
        (("r", "a.txt"), "cannot tell the format"),
        (("r", "missing/a.csv"), "cannot write"),
        (("r", "a.csv", "--plots", "zz"), "has no plot 'zz'"),
        (("r", "a.csv", "--steps", "5"), "give A:B"),
        (("r", "a.csv", "--steps", "5:2"), "A is after B"),
        (("r", "a.csv", "--plots", ","), "names no plot"),
        (("r", "a.html", "--max_mb", "nan"), "not a positive number of MiB"),
        (("r", "a.csv", "--no_such_flag"), "unrecognized arguments"),
        (("../r", "a.csv"), "not a valid name"),
    ):
        done = export(folder, args[0], str(tmp_path / args[1]), *args[2:])
        assert done.returncode != 0 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and says in done.stderr, done.stderr
    assert list(tmp_path.glob("a.*")) == []  # nothing written, not even in part
    listed = subprocess.run([COMMAND, "runs", "--data_dir", str(folder)], capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert listed.returncode == 0
    assert [line.split()[:3] for line in listed.stdout.splitlines()[1:]][-1] == ["r", "3", "0..39"]


def test_the_html_file_shows_every_value_from_file_with_no_server(
    browser: Callable[[], Page], tmp_path: Path
) -> None:
    with serve_in_thread(ingest_port=0, bokeh_port=0, data_dir=tmp_path) as server:
        sent(server)
        done = export(tmp_path, "r", str(tmp_path / "r.html"))  # read as the server runs
    assert done.returncode == 0, done.stderr  # and now no server runs
    text = (tmp_path / "r.html").read_text()
    assert fetches(text) == []  # BokehJS inlined
    page = browser()
    page.open((tmp_path / "r.html").as_uri())
    line = page.wait_for_line_length("loss", STEPS)
    assert line == list(range(STEPS))  # every point of every line
    assert page.line("loss", 1)[1] == [float(loss(s)[1]) for s in range(STEPS)]
    assert page.wait_for_column_length("pts", "x", 3) == [STEPS - 1.0] * 3  # the last step
    model = "Bokeh.documents[0].get_model_by_name"
    page.js(f"{model}('streamvis:step').value = 7;")  # the time control moves the plots
    assert page.wait_for_column_length("pts", "x", 3) == [7.0] * 3
    assert page.js(f"return {model}('loss:cursor').location") == 7
    assert page.js(f"return {model}('streamvis:at').text") == "step 7"
    fetched = page.js(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
        ".filter((n) => !n.startsWith('file:') && !n.startsWith('data:'))"
    )
    assert fetched == []  # nothing from the network


def test_a_big_run_is_thinned_to_fit_and_the_page_says_so(
    stored: StreamvisServer, tmp_path: Path
) -> None:
    with Client(f"127.0.0.1:{stored.ingest_port}", "big", exit_timeout=5) as client:
        client.set_layout({"pts": (0, 0, 1, 1)})
        noise = np.random.default_rng(0)  # data that does not compress away
        for step in range(60):
            client.scatter("pts", noise.random((2000, 2)), spatial_dim=1, step=step)
            assert client.flush(timeout=10)
    done = export(tmp_path, "big", str(tmp_path / "big.html"), "--max_mb", "2")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "big.html").read_text()
    said = re.search(r"(\d+) of its 60 steps are kept here", text)
    assert said is not None and 1 < int(said.group(1)) < 60
    small = export(tmp_path, "big", str(tmp_path / "all.html"))  # 20 MiB: all of it
    assert small.returncode == 0, small.stderr
    assert "steps are kept here" not in (tmp_path / "all.html").read_text()
    assert (tmp_path / "big.html").stat().st_size <= 2 * 2**20  # the cap: the file's size
    assert (tmp_path / "all.html").stat().st_size > 3 * 2**20


def test_parquet_without_pyarrow_says_what_to_install(
    writing: StreamvisServer, tmp_path: Path
) -> None:
    args = ["export", "--data_dir", str(tmp_path), "r", str(tmp_path / "r.parquet")]
    code = (
        "import sys; sys.modules['pyarrow'] = None;"  # as where pyarrow is not installed
        f"from streamvis._commands import main; sys.exit(main({args!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "needs pyarrow: pip install pyarrow" in done.stderr
    assert not (tmp_path / "r.parquet").exists()


def test_long_lines_are_thinned_to_their_extremes_to_fit(
    stored: StreamvisServer, tmp_path: Path, browser: Callable[[], Page]
) -> None:
    with Client(f"127.0.0.1:{stored.ingest_port}", "long", exit_timeout=5) as client:
        client.set_layout({"loss": (0, 0, 1, 1)})
        for step in range(30_000):
            spike = 1000.0 if step == 12_345 else 0.0  # what thinning must not lose
            client.tandem_lines("loss", step, np.array([np.sin(step / 50), spike, -spike, 1]))
        assert client.flush(timeout=60)
    done = export(tmp_path, "long", str(tmp_path / "long.html"), "--max_mb", "2")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "long.html").stat().st_size <= 2 * 2**20
    page = browser()
    page.open((tmp_path / "long.html").as_uri())
    header = page.wait_for("Bokeh.documents[0]?.get_model_by_name('streamvis:header')?.text")
    assert "least and greatest value of every" in header
    xs, ys = page.line("loss", 1)
    assert 100 < len(xs) < 30_000 and max(ys) == 1000.0 and xs[ys.index(1000.0)] == 12_345
    assert min(page.line("loss", 2)[1]) == -1000.0 and xs[0] == 0


def test_the_html_file_shows_each_plot_as_it_was_at_each_step(
    stored: StreamvisServer, tmp_path: Path, browser: Callable[[], Page]
) -> None:
    with Client(f"127.0.0.1:{stored.ingest_port}", "mixed", exit_timeout=5) as client:
        client.set_layout({"old": (0, 0, 1, 1)})
        client.tandem_lines("old", 0, np.zeros(3))  # gone with the clear below
        client.clear()
        client.set_layout({"loss": (0, 0, 1, 1), "pts": (0, 1, 1, 1), "bag": (1, 0, 1, 1),
                           "free": (1, 1, 1, 1)})  # fmt: skip
        for step in range(6):
            client.set_step(step)
            client.tandem_lines("loss", step, np.array([float(step)]))
            assert client.flush(timeout=10)
            client.scatter("pts", np.full((2, 2), float(step)), spatial_dim=1,
                           fig_kwargs={"title": "points"} if step == 0 else None)  # fmt: skip
            if step == 3:  # an append plot starts anew from a replace
                client.scatter("bag", np.full((1, 2), 30.0), spatial_dim=1)
            else:
                client.scatter("bag", np.full((1, 2), float(step)), spatial_dim=1, append=True)
            assert client.flush(timeout=10)
        client.set_step(None)
        client.scatter("free", np.full((1, 2), 9.0), spatial_dim=1)  # no step at all
        assert client.flush(timeout=10)
    run = streamvis.read_run(tmp_path, "mixed")
    assert list(run.plots) == ["loss", "pts", "bag", "free"]  # the cleared plot is gone
    done = export(tmp_path, "mixed", str(tmp_path / "m.html"), "--steps", "2:")
    assert done.returncode == 0, done.stderr
    page = browser()
    page.open((tmp_path / "m.html").as_uri())
    assert page.wait_for_column_length("bag", "x", 3) == [30.0, 4.0, 5.0]  # since the replace
    assert page.wait_for_column_length("pts", "x", 2) == [5.0, 5.0]
    assert page.column("free", "x") == [9.0]  # by time: its frame came after every step
    model = "Bokeh.documents[0].get_model_by_name"
    assert page.js(f"return {model}('pts:figure').title.text") == "points"  # sent at step 0
    page.js(f"{model}('streamvis:step').value = 0;")  # step 2
    assert page.wait_for_column_length("bag", "x", 3) == [0.0, 1.0, 2.0]
    assert page.column("pts", "x") == [2.0, 2.0] and page.column("free", "x") == []
