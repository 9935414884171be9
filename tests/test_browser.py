"""What a person sees: a real Chromium reads the plots' data from Bokeh.documents."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

from browser import COLUMN_JS, FITS_JS, Page, scaled
from streamvis import Client, ColorSpec, ShapeError
from streamvis._page.figures import WEBGL_POINTS
from streamvis._page.shows import LARGE_POINTS
from streamvis._plots.envelope import BUCKETS, TAIL_ROWS
from streamvis._plots.raster import RASTER_POINTS, packed_rgba
from streamvis._server import StreamvisServer
from streamvis._specs import resolve_palette, sample_palette

LAYOUT = {"loss": (0, 0, 1, 1), "pts": (0, 1, 1, 1)}
RANGES = (
    "(() => { const f = Bokeh.documents[0].get_model_by_name(arguments[0]);"
    " return [f.x_range.start, f.x_range.end, f.y_range.start, f.y_range.end]; })()"
)

# The color each of the first arguments[1] lines of the figure named arguments[0] is drawn in.
LINE_COLORS_JS = """
const glyph = Bokeh.documents[0].get_model_by_name(arguments[0]).renderers[0].glyph;
const rgba = glyph.line_color.transform.rgba_mapper.v_compute([...Array(arguments[1]).keys()]);
const hex = (i) => [0, 1, 2].map((j) => rgba[4 * i + j].toString(16).padStart(2, "0")).join("");
return Array.from({length: arguments[1]}, (_, i) => "#" + hex(i));
"""

# The image of the rasterized plot named arguments[0] when it is drawn for the page's frame
# (its ranges and pixel size), with the pixel it holds at the data point arguments[1..2].
IMAGE_JS = """(() => {
  FITS
  const doc = Bokeh.documents[0];
  const d = doc.get_model_by_name(arguments[0]).data;
  const f = doc.get_model_by_name(arguments[0] + ":figure");
  const image = d.image[0], [h, w] = image.shape;
  const x = [d.x[0], d.x[0] + d.dw[0]], y = [d.y[0], d.y[0] + d.dh[0]];
  const near = (a, b) => Math.abs(a - b) <= 1e-6 * Math.abs(x[1] - x[0] + y[1] - y[0]);
  const drawn = near(x[0], f.x_range.start) && near(x[1], f.x_range.end)
    && near(y[0], f.y_range.start) && near(y[1], f.y_range.end)
    && fits(w, h, f);
  const column = Math.floor((arguments[1] - x[0]) / (x[1] - x[0]) * w);
  const row = Math.floor((arguments[2] - y[0]) / (y[1] - y[0]) * h);
  return drawn && {x, y, pixels: [w, h], spot: image[row * w + column]};
})()""".replace("FITS", FITS_JS)

LOSS_COLUMNS = (  # read together: the page may get a new summary between two reads
    "const d = Bokeh.documents[0].get_model_by_name('loss').data;"
    " return [Array.from(d.xs[0]), Array.from(d.ys[0]), Array.from(d.ys[1])];"
)


def shows(page: Page, server: StreamvisServer, query: str = "") -> Page:
    page.open(f"http://127.0.0.1:{server.bokeh_port}/{query}")
    page.all_rendered()
    return page


def test_page_holds_every_tandem_point_and_the_last_scatter(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    live = shows(browser(), server)
    live.wait_for("Bokeh.documents[0].get_model_by_name('loss:figure') !== null")
    n = 1000  # sent as fast as the client goes: replaces coalesce, appends must all arrive
    for step in range(n):
        client.tandem_lines("loss", step, np.array([step, 2 * step, -step], np.float32))
        client.scatter("pts", np.full((step + 1, 2), step, np.float32), spatial_dim=1)
    assert client.flush(timeout=20)

    for page in (live, shows(browser(), server)):  # updated live, and a second tab from scratch
        assert page.wait_for_line_length("loss", n) == list(range(n))
        assert page.line("loss", 1)[1] == [2 * s for s in range(n)]
        assert page.wait_for_column_length("pts", "x", n) == [n - 1] * n
    live.reload()
    live.all_rendered()
    live.wait_for_line_length("loss", n)
    assert live.line("loss", 2)[1] == [-s for s in range(n)]
    assert live.js(
        "return Bokeh.documents[0].get_model_by_name('loss').data.ys[0] instanceof Float32Array"
    )
    palette = sample_palette(resolve_palette("Viridis256"), 3)  # the default, one per line
    assert live.js(LINE_COLORS_JS, "loss:figure", 3) == [c.lower() for c in palette]


def test_page_opened_before_any_data_waits_then_shows_it(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    page = shows(browser(), server, "?run=later")
    page.wait_for("Bokeh.documents[0].get_model_by_name('streamvis:waiting') !== null")
    client = connect("later")
    client.set_layout(LAYOUT)
    client.scatter("pts", np.zeros((7, 2)))
    assert client.flush(timeout=10)
    assert page.wait_for_column_length("pts", "y", 7) == [0] * 7


def test_zoom_and_pan_survive_streaming_updates(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    for step in range(20):
        client.tandem_lines("loss", step, np.array([step], np.float32))
    assert client.flush(timeout=10)
    page = shows(browser(), server)
    page.wait_for_line_length("loss", 20)
    before = page.wait_for(f"{RANGES}[1] >= 19", "loss:figure")

    left, top, width, height = page.frame_rect("loss:figure")
    x, y = int(left + width / 2), int(top + height / 2)
    drag = ActionBuilder(page.driver)
    pointer: Any = drag.pointer_action  # selenium's actions are untyped
    pointer.move_to_location(x, y).pointer_down()
    for i in range(1, 6):
        pointer.move_to_location(x - 30 * i, y + 12 * i)
    pointer.pointer_up()
    drag.perform()
    panned = page.wait_for(
        f"(() => {{ const r = {RANGES}; return r.some((v, i) => v !== arguments[1][i]) && r; }})()",
        "loss:figure",
        before,
    )
    for step in range(20, 120):
        client.tandem_lines("loss", step, np.array([10 * step], np.float32))
    assert client.flush(timeout=10)
    page.wait_for_line_length("loss", 120)
    page.all_rendered()
    assert page.js(f"return {RANGES}", "loss:figure") == panned


def test_runs_page_lists_every_run(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    for run in ("one", "two"):
        client = connect(run)
        client.set_layout(LAYOUT)
        assert client.flush(timeout=10)
    page = browser()
    page.open(f"http://127.0.0.1:{server.bokeh_port}/runs")
    links = page.wait_for("Array.from(document.querySelectorAll('a')).map((a) => a.textContent)")
    assert links == ["one", "two"]
    shows(page, server, "?run=two")
    assert "one" in page.wait_for("Bokeh.documents[0].get_model_by_name('streamvis:header').text")
    page.open(f"http://127.0.0.1:{server.bokeh_port}/runs")  # choose both, to compare them
    page.wait_for("document.querySelectorAll('input[name=run]').length === 2")
    boxes = "document.querySelectorAll('input[name=run]')"
    page.js(f"{boxes}.forEach((box) => {{ box.checked = true; }});")
    page.js("document.querySelector('form').submit();")
    page.wait_for("window.location.search === '?run=one&run=two'")


def test_an_address_can_ask_for_some_plots_and_says_what_it_cannot_show(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    client.tandem_lines("loss", 0, np.zeros(2))
    client.scatter("pts", np.zeros((4, 2)), spatial_dim=1)
    assert client.flush(timeout=10)
    page = shows(browser(), server, "?run=test&run=other&plot=pts&step=x7&step=57")
    names = "Bokeh.documents[0].get_model_by_name"
    assert page.wait_for(f"{names}('pts:figure') !== null")
    assert page.js(f"return {names}('loss:figure') === null")  # only the plot asked for
    header = page.wait_for(f"{names}('streamvis:header').text")
    assert "runs <b>test</b>, <b>other</b>" in header  # both named, though other sent nothing
    assert "step=&#x27;x7&#x27; (not a whole number)" in header
    assert "keeps no history" in header  # this server runs in memory: no step 57 to show


def test_new_fig_kwargs_rebuild_the_figure_on_an_open_page(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    assert client.flush(timeout=10)
    page = shows(browser(), server)  # figures exist before any data: each is rebuilt twice
    client.scatter("pts", np.ones((3, 2)), fig_kwargs={"title": "first"})
    assert client.flush(timeout=10)
    page.wait_for_column_length("pts", "x", 3)
    client.scatter("pts", np.ones((4, 2)), fig_kwargs={"title": "second", "x_axis_type": "log"})
    assert client.flush(timeout=10)
    title = "Bokeh.documents[0].get_model_by_name('pts:figure').title.text"
    assert page.wait_for(f"{title} === 'second' && {title}") == "second"
    assert page.wait_for_column_length("pts", "x", 4) == [1, 1, 1, 1]
    scale = "Bokeh.documents[0].get_model_by_name('pts:figure').x_scale.type"
    assert page.wait_for(scale) == "LogScale"


def test_many_points_draw_with_webgl_only_where_the_page_has_a_gpu(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    client.scatter("pts", np.random.default_rng(0).normal(size=(WEBGL_POINTS, 2)))
    assert client.flush(timeout=10)
    backend = "Bokeh.documents[0].get_model_by_name('pts:figure').output_backend"
    gpu = browser()  # headless Chromium's WebGL is software: pretend this one has a GPU
    gpu.driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": "window.streamvis_gpu = true;"}
    )
    for page, expected in ((shows(gpu, server), "webgl"), (shows(browser(), server), "canvas")):
        assert page.wait_for(f"{backend} === arguments[0] && {backend}", expected) == expected
        assert len(page.wait_for_column_length("pts", "x", WEBGL_POINTS)) == WEBGL_POINTS


def test_a_long_line_plot_shows_its_envelope_and_a_zoomed_window_in_detail(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    n = 20_000
    ys = np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)
    for step in range(n):
        client.tandem_lines("loss", step, ys[step])
    assert client.flush(timeout=20)
    page = shows(browser(), server)
    last = "(() => { const x = Bokeh.documents[0].get_model_by_name('loss').data.xs[0];"
    page.wait_for(f"{last} return x[x.length - 1] === {n - 1}; }})()")
    x, y0, y1 = page.js(LOSS_COLUMNS)
    assert len(x) <= 4 * BUCKETS + TAIL_ROWS
    for k, y in enumerate((y0, y1)):  # every line keeps its extremes
        assert (min(y), max(y)) == (ys[:, k].min(), ys[:, k].max())

    left, top, width, height = page.frame_rect("loss:figure")
    origin = ScrollOrigin.from_viewport(int(left + width / 2), int(top + height / 2))
    for _ in range(12):  # wheel-zoom in until the x range holds a few hundred steps
        ActionChains(page.driver).scroll_from_origin(origin, 0, -200).perform()
        start, end = page.js(f"return {RANGES}", "loss:figure")[:2]
        if end - start < 600:
            break
    assert end - start < 600
    first, stop = int(np.ceil(start)), int(np.floor(end)) + 1
    inside = (
        f"{last} return x.filter((v) => v >= {first} && v < {stop}).length === {stop - first};"
        " })()"
    )
    page.wait_for(inside)
    x, _, y = map(np.array, page.js(LOSS_COLUMNS))
    held = (x >= first) & (x < stop)
    np.testing.assert_array_equal(x[held], np.arange(first, stop))
    np.testing.assert_array_equal(y[held], ys[first:stop, 1])


def test_a_scatter_of_many_points_is_an_image_of_the_view_redrawn_as_it_zooms_and_streams(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    points = np.empty((2, RASTER_POINTS // 2, 2), np.float32)  # color group 0: a cloud...
    points[0] = np.random.default_rng(0).uniform(-10, 10, size=(RASTER_POINTS // 2, 2))
    points[1] = (0.5, 0.5)  # ...group 1 (drawn after it, so on top): one spot
    yellow = int(packed_rgba(resolve_palette("Viridis256")[-1:])[0])
    client.scatter("pts", points, spatial_dim=2, color=ColorSpec("Viridis256", 0))
    assert client.flush(timeout=10)
    page = shows(browser(), server)
    assert page.js("return Object.keys(Bokeh.documents[0].get_model_by_name('pts').data)") == [
        "image", "x", "y", "dw", "dh", "left", "right", "bottom", "top"
    ]  # fmt: skip
    whole = page.wait_for(IMAGE_JS, "pts", 0.5, 0.5)
    assert whole["spot"] == yellow and whole["x"][0] < -10 and whole["x"][1] > 10

    left, top, width, height = page.frame_rect("pts:figure")
    origin = ScrollOrigin.from_viewport(int(left + width / 2), int(top + height / 2))
    for _ in range(3):
        ActionChains(page.driver).scroll_from_origin(origin, 0, -200).perform()
    zoomed = page.wait_for(
        f"(() => {{ const i = {IMAGE_JS}; return i && i.x[1] - i.x[0] < 10 && i; }})()",
        "pts",
        0.5,
        0.5,
    )
    assert zoomed["spot"] == yellow  # (the pixel size may change too: axis labels differ)

    points[1] = (-0.5, -0.5)  # new data keeps the zoom: drawn for the same view
    client.scatter("pts", points, spatial_dim=2, color=ColorSpec("Viridis256", 0))
    assert client.flush(timeout=10)
    moved = page.wait_for(
        f"(() => {{ const i = {IMAGE_JS}; return i && i.spot === arguments[3] && i; }})()",
        "pts",
        -0.5,
        -0.5,
        yellow,
    )
    assert (moved["x"], moved["y"]) == (zoomed["x"], zoomed["y"])


def test_a_held_back_large_replace_reaches_the_page_once_the_stream_stops(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    page = shows(browser(), server)
    for step in range(40):  # large replaces come faster than the page may take them
        client.scatter("pts", np.full((LARGE_POINTS, 2), step, np.float32))
        client.tandem_lines("loss", step, np.array([step], np.float32))
        assert client.flush(timeout=10)
    assert page.wait_for_line_length("loss", 40) == list(range(40))
    last = f"{COLUMN_JS}[0] === 39 && {COLUMN_JS}.length"
    assert page.wait_for(last, "pts", "x") == LARGE_POINTS


def test_an_image_of_millions_of_segments_is_drawn_while_other_runs_go_on(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    big, other = connect("big"), connect("other")
    big.set_layout({"segs": (0, 0, 1, 1)})
    other.set_layout({"loss": (0, 0, 1, 1)})
    lines = np.random.default_rng(0).uniform(0, 1, size=(64, 4097, 2)).astype(np.float32)
    for _ in range(24):  # 6.3M segments, 256 KiB x 8 at a time: the image takes seconds
        big.multi_lines("segs", lines, line_dims=(0,), spatial_dim=2, append=True)
        assert big.flush(timeout=30)
    page = browser()
    opened = threading.Thread(
        target=lambda: page.open(f"http://127.0.0.1:{server.bokeh_port}/?run=big")
    )
    opened.start()
    waits, drawn, deadline = [], None, time.monotonic() + scaled(60)
    for step in range(100_000):  # another run's training loop, while the image is drawn
        started = time.monotonic()
        other.tandem_lines("loss", step, np.array([step], np.float32))
        assert other.flush(timeout=30)
        waits.append(time.monotonic() - started)
        if not opened.is_alive():
            loaded = "window.Bokeh?.documents.length > 0"
            drawn = page.js(f"return {loaded} && {IMAGE_JS}", "segs", 0.5, 0.5)
            if drawn or time.monotonic() > deadline:
                break
    opened.join()
    assert drawn and drawn["spot"] != 0, "the image was not drawn"
    assert len(waits) > 5 and max(waits) < 0.5, f"flush() waited {max(waits):.2f} s"


def test_labels_name_the_lines_in_a_legend_that_hides_them_and_hover_names_them(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    with pytest.raises(ShapeError, match="labels has 1 names for 2 lines"):
        client.tandem_lines("loss", 0, np.zeros(2), labels=["train"])
    for step in range(5):
        client.tandem_lines("loss", step, np.array([step, -step]), labels=["train", "test"])
    assert client.flush(timeout=10)
    page = shows(browser(), server)
    fig = "Bokeh.documents[0].get_model_by_name('loss:figure')"
    legend = f"{fig}.center.find((model) => model.type === 'Legend')"
    items = page.wait_for(f"{fig} && {legend}?.items.map((item) => item.label.value)")
    assert items == ["train", "test"]
    assert page.js(f"return {legend}.click_policy") == "hide"
    entries_on = f"{legend}.items.every((item) => item.renderers.every((r) => r.visible))"
    assert page.js(f"return {entries_on}")  # shown as on: smoothing off hides no twin
    page.js(f"{legend}.items[1].renderers[0].visible = false;")  # as its click does
    lines = f"{fig}.renderers.filter((r) => r.name === 'loss:line')"
    assert page.js(f"return {lines}.map((r) => r.visible)") == [True, False]  # one line each
    hover = page.js(f"return {fig}.toolbar.tools.find((t) => t.type === 'HoverTool').tooltips")
    assert [name for name, _ in hover] == ["line", "step", "value"]
    labels: list[Any] = page.column("loss", "label")
    assert labels == ["train", "test"]  # what hover names each line by


def test_log_y_redraws_the_line_plots_on_a_log_axis_with_the_data_left_as_it_is(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    client = connect()
    client.set_layout(LAYOUT)
    for step in range(1, 6):
        client.tandem_lines("loss", step, np.array([10.0**-step, 2.0]))
    assert client.flush(timeout=10)
    page = shows(browser(), server)
    fig = "Bokeh.documents[0].get_model_by_name('loss:figure')"
    source_js = "Bokeh.documents[0].get_model_by_name('loss')"
    ys = f"JSON.stringify({source_js}.data.ys.map((y) => Array.from(y)))"
    before = page.wait_for(f"{fig} && {ys}")
    source = page.js("return Bokeh.documents[0].get_model_by_name('loss').id")
    page.js("Bokeh.documents[0].get_model_by_name('streamvis:log').active = true;")
    page.wait_for(f"{fig}.y_scale.type === 'LogScale' && {fig}.left[0].ticker.type === 'LogTicker'")
    assert page.js(f"return {ys}") == before  # the same data, in the same source
    assert page.js("return Bokeh.documents[0].get_model_by_name('loss').id") == source
    page.js("Bokeh.documents[0].get_model_by_name('streamvis:log').active = false;")
    page.wait_for(f"{fig}.y_scale.type === 'LinearScale'")
