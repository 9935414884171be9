"""Comparing runs in a real browser: a page of several runs overlays their line plots in one
figure and shows their other plots in linked panels, live and at a step."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from browser import Page
from streamvis import Client
from streamvis._server import StreamvisServer
from test_browser import shows

MODEL = "Bokeh.documents[0].get_model_by_name"
LAYOUT = {"loss": (0, 0, 1, 1), "pts": (0, 1, 1, 1)}
AT = (  # where the page draws a run's step: through its transform of the run's x
    "((run, step) => Bokeh.documents[0].all_models.values().find((m) =>"
    " m.tags?.includes(`streamvis:x:${run}`))?.compute(step))"
)
LEGEND = "{0}.center.find((model) => model.type === 'Legend')?.items.map((i) => i.label.value)"


def two_runs(
    connect: Callable[..., Client], steps: int, plots: dict[str, tuple[str, ...]]
) -> dict[str, Client]:
    """Runs "a" and "b" send ``steps`` line steps (b's values are a's negated, plus 100)
    and their last scatter (a's points at 1, b's at 2) to the ``plots`` each lays out;
    their clients."""
    clients = {}
    for sign, run in ((1, "a"), (-1, "b")):
        client = clients[run] = connect(run)
        client.set_layout({name: LAYOUT[name] for name in plots[run]})
        for step in range(steps):
            values = sign * np.array([step, 2 * step], np.float32) + (100 if sign < 0 else 0)
            if "loss" in plots[run]:
                client.tandem_lines("loss", step, values)
        if "pts" in plots[run]:
            client.scatter("pts", np.full((4, 2), 1.0 if sign > 0 else 2.0), spatial_dim=1)
        assert client.flush(timeout=10)
    return clients


def started(connect: Callable[..., Client]) -> tuple[Client, Client]:
    """Runs "a" and "b" lay out a line plot; a sends its step 0. Their clients."""
    a, b = connect("a"), connect("b")
    for client in (a, b):
        client.set_layout({"loss": (0, 0, 1, 1)})
    a.tandem_lines("loss", 0, np.zeros(2))
    assert a.flush(timeout=10) and b.flush(timeout=10)
    return a, b


def opened(browser: Callable[[], Page], server: StreamvisServer, query: str) -> Page:
    return shows(browser(), server, query)


def test_a_page_of_two_runs_overlays_their_lines_and_shows_their_points_side_by_side(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    n = 50
    two_runs(connect, n, {"a": ("loss", "pts"), "b": ("loss", "pts")})
    for page in (opened(browser, server, "?run=a&run=b"), opened(browser, server, "?run=a&run=b")):
        assert page.wait_for_line_length("loss", n) == list(range(n))  # run a: every value
        assert page.line("loss", 1)[1] == [2 * s for s in range(n)]
        assert page.wait_for_line_length("loss@b", n) == list(range(n))  # run b: every value
        assert page.line("loss@b", 1)[1] == [100 - 2 * s for s in range(n)]
        fig = f"{MODEL}('loss:figure')"
        assert page.js(f"return {MODEL}('loss@b:figure')") is None  # one figure: overlaid
        assert page.wait_for(f"{fig} && {LEGEND.format(fig)}") == ["a", "b"]  # names both
        lines = f"{fig}.renderers.filter((r) => r.glyph?.type === 'MultiLine')"
        dashes = page.js(f"return {lines}.map((r) => [r.name, r.glyph.line_dash])")
        assert [name for name, _ in dashes] == ["a", "b"]  # hover names a line's run by it
        assert dashes[0][1] != dashes[1][1]  # each run in a style of its own
        hovers = page.js(
            f"return {fig}.toolbar.tools.filter((t) => t.type === 'HoverTool')"
            ".map((t) => [t.tooltips[0], t.renderers.map((r) => r.name)])"
        )
        assert hovers == [[["run", "$name"], ["a", "b"]]]  # one for both runs' lines
        assert page.wait_for_column_length("pts", "x", 4) == [1.0] * 4  # a panel per run
        assert page.wait_for_column_length("pts@b", "x", 4) == [2.0] * 4
        titles = page.js(
            f"return ['pts', 'pts@b'].map((key) => {MODEL}(key + ':figure').title.text)"
        )
        assert titles == ["pts · a", "pts · b"]
        same = page.js(
            f"const f = {MODEL}('pts:figure'), g = {MODEL}('pts@b:figure');"
            " return f.x_range === g.x_range && f.y_range === g.y_range"
        )
        assert same  # linked: zoom one, both follow
        header = page.js(f"return {MODEL}('streamvis:header').text")
        assert "runs <b>a</b>, <b>b</b>" in header


def test_a_run_without_a_plot_says_so_and_either_runs_new_points_appear_live(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    clients = two_runs(connect, 3, {"a": ("loss", "pts"), "b": ("loss",)})
    page = opened(browser, server, "?run=a&run=b")
    missing = page.wait_for(f"{MODEL}('pts@b:missing')?.text")
    assert "Run <b>b</b> has no plot <b>pts</b>" in missing
    assert page.js(f"return {MODEL}('pts:figure') !== null")
    assert page.wait_for_line_length("loss@b", 3) == [0, 1, 2]
    for run, value in (("b", 7.0), ("a", 8.0)):  # a new point of either run, live
        clients[run].tandem_lines("loss", 3, np.full(2, value))
        assert clients[run].flush(timeout=10)
        name = "loss" if run == "a" else "loss@b"
        assert page.wait_for_line_length(name, 4) == [0, 1, 2, 3]
        assert page.line(name, 0)[1][-1] == value


def test_line_plots_can_be_drawn_by_the_steps_since_each_runs_first(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    for run, first in (("a", 0), ("b", 1000)):  # b was fine-tuned from a checkpoint
        client = connect(run)
        client.set_layout({"loss": (0, 0, 1, 1)})
        for step in range(first, first + 20):
            client.tandem_lines("loss", step, np.zeros(2))
        assert client.flush(timeout=10)
    fig = f"{MODEL}('loss:figure')"
    ends = f"{fig} && [{fig}.x_range.start, {fig}.x_range.end]"
    page = opened(browser, server, "?run=a&run=b")
    assert page.wait_for(f"{ends} && {fig}.x_range.end > 1000 && {ends}")[1] >= 1019
    page = opened(browser, server, "?run=a&run=b&x=since")
    start, end = page.wait_for(f"{ends} && Number.isFinite({fig}.x_range.end) && {ends}")
    assert start >= -1 and end <= 20  # both runs from 0
    assert page.wait_for_line_length("loss@b", 20)[0] == 1000  # the data stay as sent
    assert page.js(f"return {MODEL}('streamvis:x').value") == "since"
    page.js(f"{MODEL}('streamvis:x').value = 'step';")  # as the person's choice does
    page.wait_for(f"{MODEL}('loss:figure')?.x_range.end > 1000")


def test_two_runs_at_a_step_show_each_runs_frame_of_that_step(
    stored: StreamvisServer, browser: Callable[[], Page]
) -> None:
    for run, scale in (("a", 1.0), ("b", -1.0)):
        with Client(f"127.0.0.1:{stored.ingest_port}", run, exit_timeout=5) as client:
            client.set_layout(LAYOUT)
            for step in range(8):
                client.tandem_lines("loss", step, np.full(2, scale * step))
                client.scatter("pts", np.full((3, 2), scale * step), spatial_dim=1, step=step)
                assert client.flush(timeout=10)  # paced: every step kept
    page = opened(browser, stored, "?run=a&run=b&step=3")
    xs = f"(key) => Array.from({MODEL}(key)?.data.x ?? [])"
    both = f"JSON.stringify(['pts', 'pts@b'].map({xs}))"
    assert page.wait_for(f"{both} === JSON.stringify([[3, 3, 3], [-3, -3, -3]]) && {both}")
    slider = f"{MODEL}('streamvis:step')"
    page.js(f"{slider}.value = 6; {slider}.value_throttled = 6;")  # both runs move together
    page.wait_for(f"{both} === JSON.stringify([[6, 6, 6], [-6, -6, -6]])")
    assert page.wait_for_line_length("loss@b", 8) == list(range(8))  # lines: every row


def test_a_plot_drawn_anew_beside_other_runs_rebuilds_its_cell_only(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    clients = two_runs(connect, 3, {"a": ("loss", "pts"), "b": ("loss", "pts")})
    page = opened(browser, server, "?run=a&run=b")
    page.wait_for_column_length("pts@b", "x", 4)
    ids = f"['loss:figure', 'pts:figure', 'pts@b:figure'].map((n) => {MODEL}(n)?.id)"
    before = page.js(f"return {ids}")
    clients["a"].scatter("pts", np.full((4, 2), 5.0), spatial_dim=1, fig_kwargs={"title": "new"})
    assert clients["a"].flush(timeout=10)
    page.wait_for(f"{MODEL}('pts:figure')?.title.text === 'new'")
    after = page.js(f"return {ids}")
    assert after[0] == before[0]  # the line plots' figure stays: its zoom, its hidden lines
    assert after[1] != before[1] and after[2] != before[2]  # both runs' panels, anew
    assert page.js(f"return {MODEL}('pts:figure').x_range === {MODEL}('pts@b:figure').x_range")
    assert page.wait_for_column_length("pts@b", "x", 4) == [2.0] * 4


def test_line_plots_can_be_drawn_by_the_seconds_since_each_runs_start(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    a, b = started(connect)
    time.sleep(0.6)  # run a's steps 1 and later come 0.6 s after its start (time must pass)
    for step in range(1, 20):
        a.tandem_lines("loss", step, np.zeros(2))
    for step in range(1000, 1020):  # b starts later, from a checkpoint
        b.tandem_lines("loss", step, np.zeros(2))
    assert a.flush(timeout=10) and b.flush(timeout=10)
    page = opened(browser, server, "?run=a&run=b&x=time")
    fig = f"{MODEL}('loss:figure')"
    assert 0.55 < page.wait_for(f"{AT}('a', 10)") < 5  # seconds since a's start
    assert page.js(f"return {AT}('a', 0)") == 0
    assert 0 <= page.js(f"return {AT}('b', 1019)") < 0.55  # since b's own start
    end = page.wait_for(f"Number.isFinite({fig}?.x_range.end) && {fig}.x_range.end")
    assert end < 5  # no step numbers on this axis
    assert page.js(f"return {fig}.below[0].axis_label") == "seconds since start"
    assert page.wait_for_line_length("loss@b", 20)[0] == 1000  # the data stay as sent
    time.sleep(0.6)
    for step in range(20, 30):  # later steps, live: the page's map grows with them
        a.tandem_lines("loss", step, np.zeros(2))
    assert a.flush(timeout=10)
    assert page.wait_for_line_length("loss", 30)[-1] == 29
    assert page.wait_for(f"{AT}('a', 29) > 1.15 && {AT}('a', 29)") < 10
    alone = opened(browser, server, "?run=a&x=time")  # one run: by time too, named by none
    assert 1.15 < alone.wait_for(f"{AT}('a', 29)") < 10
    legend = f"{MODEL}('loss:figure')?.center.some((m) => m.type === 'Legend')"
    assert alone.js(f"return {legend}") is False  # the figure is there, with no legend


def test_a_page_opened_before_a_runs_data_draws_it_by_the_chosen_x(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    _, b = started(connect)
    page = opened(browser, server, "?run=a&run=b&x=since")  # b has sent no point yet
    page.wait_for(f"{MODEL}('loss:figure')?.id")
    for step in range(1000, 1005):  # b starts now, from a checkpoint
        b.tandem_lines("loss", step, np.zeros(2))
    assert b.flush(timeout=10)
    assert page.wait_for_line_length("loss@b", 5)[0] == 1000
    assert page.wait_for(f"{AT}('b', 1004)") == 4  # drawn by the steps since its first
