"""Smoothing matches TensorBoard's debiased EMA, however the rows arrive, and a page draws
it over the raw lines."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from browser import Page
from streamvis import Client
from streamvis._page.lines import RAW_ALPHA
from streamvis._plots.envelope import DETAIL_ROWS
from streamvis._plots.growing import GrowingColumns
from streamvis._plots.smoothing import KEPT, ON_LOOP_ROWS, Smoothed, Smoothings
from streamvis._server import StreamvisServer


def tensorboard(values: list[float], weight: float) -> list[float]:
    """TensorBoard's classic smoothing of one series, as its line chart computes it."""
    if all(v == values[0] for v in values):
        return list(values)
    last, count, out = 0.0, 0, []
    for value in values:
        if not math.isfinite(value):
            out.append(value)
            continue
        last = last * weight + (1 - weight) * value
        count += 1
        out.append(last / (1 - weight**count))
    return out


def columns(ys: np.ndarray, first: int = 0) -> dict[str, np.ndarray]:
    x = np.arange(first, first + len(ys), dtype=np.float64)
    return {"x": x, **{f"y{k}": ys[:, k].astype(np.float32) for k in range(ys.shape[1])}}


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 300),
    weight=st.sampled_from([0.0, 0.1, 0.6, 0.9, 0.99, 0.999]),
    cuts=st.lists(st.integers(1, 299), max_size=5),
    nans=st.lists(st.integers(0, 299), max_size=6),
    seed=st.integers(0, 2**16),
)
def test_smoothing_equals_tensorboards_however_the_rows_are_cut(
    rows: int, weight: float, cuts: list[int], nans: list[int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    ys = rng.normal(size=(rows, 3)).astype(np.float32)
    ys[:, 2] = 5.0  # a constant line stays as it is
    for row in nans:
        if row < rows:
            ys[row, 0] = np.nan if row % 2 else np.inf
    smoothed = Smoothed(weight)
    bounds = [0, *sorted({c for c in cuts if c < rows}), rows]
    smoothed.feed(columns(ys[a:b], a) for a, b in itertools.pairwise(bounds))
    got = smoothed.columns()
    assert smoothed.rows == rows and list(got["x"]) == list(range(rows))
    for k in range(3):
        want = tensorboard([float(v) for v in ys[:, k]], weight)
        np.testing.assert_allclose(got[f"y{k}"], want, rtol=1e-6, atol=1e-6)  # float32


def test_a_long_line_keeps_every_stride_th_smoothed_row_and_the_newest() -> None:
    rows = 5 * KEPT + 3
    ys = np.sin(np.arange(rows) / 50.0)[:, None]
    smoothed = Smoothed(0.6)
    smoothed.feed(columns(ys[a : a + 1000], a) for a in range(0, rows, 1000))
    got = smoothed.columns()
    want = tensorboard(list(ys[:, 0].astype(np.float32).astype(float)), 0.6)
    assert KEPT <= len(got["x"]) <= 2 * KEPT + 1
    assert got["x"][-1] == rows - 1  # the newest row, whatever the stride
    kept = got["x"].astype(int)
    assert all(row % smoothed.stride == 0 for row in kept[:-1])
    np.testing.assert_allclose(got["y0"], [want[row] for row in kept], rtol=1e-6, atol=1e-6)


def test_few_new_rows_are_smoothed_at_once_and_many_by_work_handed_out() -> None:
    data = GrowingColumns(columns(np.zeros((0, 2))))
    data.append(columns(np.ones((10, 2))))
    smoothings = Smoothings()
    told: list[str] = []
    smoothed, work = smoothings.at(0.5, data, lambda: told.append("first"))
    assert work is None and smoothed.rows == 10  # few rows: smoothed on the spot
    data.append(columns(np.ones((ON_LOOP_ROWS + 1, 2)), 10))
    again, work = smoothings.at(0.5, data, lambda: told.append("second"))
    assert again is smoothed and work is not None and smoothed.busy
    assert smoothings.at(0.5, data, lambda: told.append("third")) == (smoothed, None)
    work()  # under way for two pages: both are told when it is done
    assert not smoothed.busy and smoothed.rows == ON_LOOP_ROWS + 11
    assert told == ["second", "third"]


SMOOTHED_JS = """(() => {
  const doc = Bokeh.documents[0], s = doc.get_model_by_name(arguments[0] + ':smoothed');
  return s && s.data.ys.length ? [Array.from(s.data.xs[0]), s.data.ys.map((y) => Array.from(y))]
    : null;
})()"""
ALPHAS_JS = """return Bokeh.documents[0].get_model_by_name(arguments[0] + ':figure').renderers
  .filter((r) => r.glyph?.type === 'MultiLine')
  .map((r) => [r.name, r.visible, r.glyph.line_alpha.value ?? r.glyph.line_alpha])"""


def smooth(page: Page, weight: float) -> None:
    """Set the page's smoothing as a person's drag of its slider does."""
    slider = "Bokeh.documents[0].get_model_by_name('streamvis:smoothing')"
    page.js(f"{slider}.value = {weight}; {slider}.value_throttled = {weight};")


def test_a_page_smooths_every_line_as_tensorboard_does_with_the_raw_lines_faint(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    rng = np.random.default_rng(1)
    short, long = rng.normal(size=(300, 2)), rng.normal(size=(DETAIL_ROWS * 3, 1)).cumsum(0)
    client = connect()
    client.set_layout({"loss": (0, 0, 1, 1), "long": (0, 1, 1, 1)})
    for step, values in enumerate(short):
        client.tandem_lines("loss", step, values)
    for step, values in enumerate(long):
        client.tandem_lines("long", step, values)
    assert client.flush(timeout=20)
    page = browser()
    page.open(f"http://127.0.0.1:{server.bokeh_port}/")
    page.all_rendered()
    page.wait_for_line_length("loss", 300)
    assert page.js(SMOOTHED_JS, "loss") is None  # not smoothed until asked
    smooth(page, 0.6)
    xs, ys = page.wait_for(SMOOTHED_JS, "loss")
    assert xs == list(range(300))
    for k in range(2):  # what the page draws is TensorBoard's smoothing of what was sent
        want = tensorboard([float(v) for v in short[:, k].astype(np.float32)], 0.6)
        np.testing.assert_allclose(ys[k], want, rtol=1e-5, atol=1e-6)
    assert page.js(ALPHAS_JS, "loss") == [
        ["loss:line", True, RAW_ALPHA], ["loss:smooth", True, 1.0]
    ]  # fmt: skip
    xs, ys = page.wait_for(SMOOTHED_JS, "long")  # a long line: smoothed at full resolution
    want = tensorboard([float(v) for v in long[:, 0].astype(np.float32)], 0.6)
    assert xs[-1] == len(long) - 1 and len(xs) < len(long)
    np.testing.assert_allclose(ys[0], [want[int(x)] for x in xs], rtol=1e-5, atol=1e-6)
    client.tandem_lines("loss", 300, np.array([50.0, -50.0]))  # smoothed live
    assert client.flush(timeout=10)
    page.wait_for(f"{SMOOTHED_JS.replace('arguments[0]', repr('loss'))}?.[0].length === 301")
    smooth(page, 0.0)
    page.wait_for(f"(() => {{ {ALPHAS_JS.replace('arguments[0]', repr('loss'))} }})()"
                  ".every(([name, visible, alpha]) => visible && alpha === 1)")  # fmt: skip
    assert page.wait_for(f"{SMOOTHED_JS.replace('arguments[0]', repr('loss'))} === null")
