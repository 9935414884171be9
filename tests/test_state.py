"""Run state applies frames, appends in amortized buffers, and refuses bad frames intact."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from streamvis import ColorSpec, ShapeError, UnknownPlot
from streamvis._plots import growing
from streamvis._plots.envelope import DETAIL_ROWS
from streamvis._plots.growing import GrowingColumns
from streamvis._plots.raster import RASTER_POINTS, RASTER_SEGMENTS, Bounds
from streamvis._protocol import Frame, Op
from streamvis._specs import PlotSpec
from streamvis._state import RunState


class Sender:
    """Builds frames the way a Client would, with increasing sequence numbers."""

    def __init__(self, cid: str = "c1") -> None:
        self.cid, self.seq = cid, 0

    def __call__(
        self, op: Op, name: str | None = None, *arrays: np.ndarray, **opts: object
    ) -> Frame:
        self.seq += 1
        return Frame(
            op=op, run="r", cid=self.cid, seq=self.seq, name=name, opts=opts, arrays=arrays
        )

    def plot(self, name: str, spec: PlotSpec, *arrays: np.ndarray) -> Frame:
        return self("plot", name, *arrays, **spec.to_wire())


@pytest.fixture
def run() -> RunState:
    state = RunState("r")
    state.apply(
        Frame(
            op="layout",
            run="r",
            cid="setup",
            seq=0,
            opts={"cells": {"a": [0, 0, 1, 1], "b": [0, 1, 1, 1]}},
        )
    )
    return state


def test_growing_columns_keep_rows_and_views_stable() -> None:
    cols = GrowingColumns({"x": np.arange(2.0)})
    first = cols.view()
    for i in range(100):
        cols.append({"x": np.array([float(i)])})
    assert len(cols) == 102 and cols.view()["x"][-1] == 99.0
    assert first["x"].tolist() == [0.0, 1.0]  # old views never change
    assert cols.view(100)["x"].tolist() == [98.0, 99.0]


def test_the_head_of_growing_columns_keeps_its_rows_while_they_grow_and_spill() -> None:
    cols = GrowingColumns({"x": np.arange(3.0)})
    cols.append({"x": np.arange(3.0, growing.CHUNK_ROWS + 10)})  # a piece of its own
    cols.append({"x": np.array([-1.0])})  # the tail
    whole = cols.head(len(cols))
    head = cols.head(5)  # the first piece, and two rows cut from the second
    cols.append({"x": np.array([-2.0])})
    (piece,) = [p for p in cols.unstored() if p.rows > 3]
    cols.spill(piece, lambda: {"x": np.arange(3.0, growing.CHUNK_ROWS + 10)})
    assert head.view()["x"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0] and len(head) == 5
    assert len(whole) == growing.CHUNK_ROWS + 11 and whole.view()["x"][-1] == -1.0
    assert head.unstored() == [] and cols.head(100).view()["x"].tolist() == list(range(100))


def test_each_admitted_frame_says_how_many_rows_its_plot_then_holds(run: RunState) -> None:
    send, lines = Sender(), PlotSpec("multi_lines", append=True, line_dims=(0,), spatial_dim=2)
    held = []
    for arrays in [np.zeros((2, 2)), np.ones((3, 2)), np.ones((1, 2))]:
        admitted = run.admit(send.plot("a", PlotSpec("scatter", append=True), arrays))
        assert admitted is not None
        run.commit(admitted)
        held.append((admitted.rows, len(run.plots["a"].data)))
    for points in (3, 2):  # 2 lines of 3 points (2 segments each), then of 2, joined on
        admitted = run.admit(send.plot("b", lines, np.ones((2, points, 2))))
        assert admitted is not None
        run.commit(admitted)
        held.append((admitted.rows, len(run.plots["b"].data)))
    assert held == [(2, 2), (5, 5), (6, 6), (4, 4), (8, 8)]


def test_append_and_replace(run: RunState) -> None:
    send = Sender()
    scatter = PlotSpec("scatter", append=True)
    assert run.apply(send.plot("a", scatter, np.zeros((3, 2)))) == {"a"}
    run.apply(send.plot("a", scatter, np.ones((2, 2))))
    assert len(run.plots["a"].data) == 5
    generation = run.plots["a"].generation
    run.apply(send.plot("a", PlotSpec("scatter"), np.ones((4, 2))))
    assert len(run.plots["a"].data) == 4 and run.plots["a"].generation == generation + 1


def test_duplicates_are_ignored_per_client(run: RunState) -> None:
    send = Sender()
    frame = send.plot(
        "a", PlotSpec("tandem_lines", append=True, palette="Viridis256"), np.array(1.0), np.zeros(3)
    )
    assert run.apply(frame) == {"a"}
    assert run.apply(frame) == set()
    other = Sender("c2")
    other.seq = frame.seq - 1
    run.apply(
        other.plot(
            "a",
            PlotSpec("tandem_lines", append=True, palette="Viridis256"),
            np.array(2.0),
            np.zeros(3),
        )
    )
    assert run.plots["a"].data.view()["x"].tolist() == [1.0, 2.0]


def test_unknown_plot_and_kind_change_are_refused_and_data_kept(run: RunState) -> None:
    send = Sender()
    run.apply(send.plot("a", PlotSpec("scatter"), np.zeros((3, 2))))
    with pytest.raises(UnknownPlot, match="'zz' is not in the layout"):
        run.apply(send.plot("zz", PlotSpec("scatter"), np.zeros((3, 2))))
    with pytest.raises(ShapeError, match="'a' is a scatter plot and cannot take multi_lines"):
        run.apply(send.plot("a", PlotSpec("multi_lines", line_dims=(0,)), np.zeros((3, 2))))
    assert len(run.plots["a"].data) == 3


def test_append_with_other_line_count_names_plot_and_shapes(run: RunState) -> None:
    send = Sender()
    lines = PlotSpec("multi_lines", append=True, line_dims=(0,), spatial_dim=2)
    run.apply(send.plot("b", lines, np.zeros((4, 1, 2))))
    with pytest.raises(ShapeError, match=r"cannot append to plot 'b'.*\(4, 1, 2\).*\(5, 1, 2\)"):
        run.apply(send.plot("b", lines, np.zeros((5, 1, 2))))
    run.apply(send.plot("b", lines, np.ones((4, 3, 2))))
    assert len(run.plots["b"].data) == 4 * 3  # 1 joining segment + 2 new ones per line


def test_rows_of_a_line_plot_in_an_x_range_are_the_segments_with_an_end_in_it(
    run: RunState,
) -> None:
    send = Sender()
    lines = PlotSpec("multi_lines", append=True, line_dims=(0,), spatial_dim=2)
    xs = np.arange(10.0)
    run.apply(send.plot("b", lines, np.stack([xs, xs * 2], -1)[None]))  # one line, 9 segments
    rows = run.plots["b"].rows_reader(3.5, 5.0)()
    assert rows["x0"].tolist() == [3.0, 4.0, 5.0] and rows["x1"].tolist() == [4.0, 5.0, 6.0]
    assert rows["y1"].tolist() == [8.0, 10.0, 12.0]


def test_color_change_rebuilds_the_figure(run: RunState) -> None:
    send = Sender()
    run.apply(send.plot("a", PlotSpec("scatter"), np.zeros((3, 2))))
    version = run.plots["a"].version
    run.apply(
        send.plot("a", PlotSpec("scatter", color=ColorSpec("Viridis256", 0)), np.zeros((3, 2)))
    )
    assert run.plots["a"].version == version + 1 and run.plots["a"].levels == 3


def test_fig_kwargs_checked_once_and_kept(run: RunState) -> None:
    send = Sender()
    checked: list[Mapping[str, Any]] = []
    spec = PlotSpec("scatter", fig_kwargs={"title": "T"})
    run.apply(send.plot("a", spec, np.zeros((3, 2))), checked.append)
    run.apply(send.plot("a", spec, np.zeros((3, 2))), checked.append)
    run.apply(send.plot("a", PlotSpec("scatter"), np.zeros((3, 2))), checked.append)
    assert checked == [{"title": "T"}] and run.plots["a"].fig_kwargs == {"title": "T"}


def test_clear_forgets_layout_and_plots(run: RunState) -> None:
    send = Sender()
    run.apply(send.plot("a", PlotSpec("scatter"), np.zeros((3, 2))))
    run.apply(send("clear"))
    assert run.cells is None and run.plots == {}


def test_the_same_layout_again_changes_nothing(run: RunState) -> None:
    version = run.layout_version
    again = Frame(
        op="layout",
        run="r",
        cid="c9",
        seq=0,
        opts={"cells": {"a": [0, 0, 1, 1], "b": [0, 1, 1, 1]}},
    )
    assert run.apply(again) == set() and run.layout_version == version


def test_tandem_palette_change_rebuilds_the_figure(run: RunState) -> None:
    send = Sender()
    for palette in ("Viridis256", "Magma256"):
        run.apply(
            send.plot(
                "a",
                PlotSpec("tandem_lines", append=True, palette=palette),
                np.array(1),
                np.zeros(2),
            )
        )
    assert run.plots["a"].version == 1 and run.plots["a"].spec.palette == "Magma256"


def test_growing_columns_keep_large_appends_as_pieces_and_read_across_them() -> None:
    cols = GrowingColumns({"x": np.arange(3.0)})
    big = np.arange(100_000.0)
    cols.append({"x": big})  # large: kept as it came
    cols.append({"x": np.array([-1.0, -2.0])})
    assert len(cols) == 100_005
    assert cols.view(100_002)["x"].tolist() == [99_999.0, -1.0, -2.0]
    assert cols.view(3)["x"][:2].tolist() == [0.0, 1.0]
    everything = cols.view()["x"]
    assert everything[:4].tolist() == [0.0, 1.0, 2.0, 0.0] and everything[-1] == -2.0
    cols.append({"x": np.array([7.0])})
    assert cols.view()["x"][-2:].tolist() == [-2.0, 7.0] and len(cols) == 100_006


def test_a_long_line_plot_is_summarized_and_its_summary_follows_appends(run: RunState) -> None:
    send, tandem = Sender(), PlotSpec("tandem_lines", append=True, palette="Viridis256")
    for step in range(DETAIL_ROWS + 1):
        run.apply(send.plot("a", tandem, np.array(float(step)), np.array([step, -step], "f4")))
    plot = run.plots["a"]
    assert plot.summarized and plot.summary()["x"][-1] == DETAIL_ROWS
    assert plot.summary()["y1"].min() == -DETAIL_ROWS  # asked again: the same rows
    for step in range(DETAIL_ROWS + 1, 3 * DETAIL_ROWS):
        run.apply(send.plot("a", tandem, np.array(float(step)), np.array([step, -step], "f4")))
    summary = plot.summary()
    assert summary["x"][-1] == 3 * DETAIL_ROWS - 1 and summary["y0"].max() == 3 * DETAIL_ROWS - 1
    assert len(summary["x"]) < DETAIL_ROWS


def test_a_scatter_that_grows_many_points_is_rebuilt_as_an_image(run: RunState) -> None:
    send, scatter = Sender(), PlotSpec("scatter", append=True)
    run.apply(send.plot("a", scatter, np.zeros((RASTER_POINTS - 1, 2), "f4")))
    assert not run.plots["a"].rasterized
    run.apply(send.plot("a", scatter, np.ones((1, 2), "f4")))
    plot = run.plots["a"]
    assert plot.rasterized and plot.version == 1  # pages rebuild its figure
    assert plot.bounds == Bounds(0.0, 1.0, 0.0, 1.0)
    log_axis = PlotSpec("scatter", fig_kwargs={"y_axis_type": "log"})
    run.apply(send.plot("b", log_axis, np.ones((RASTER_POINTS, 2))))
    assert not run.plots["b"].rasterized  # the image is drawn on linear axes only


def test_a_line_plot_counts_segments_alike_before_and_after_its_columns_exist(
    run: RunState,
) -> None:
    send, lines = Sender(), PlotSpec("multi_lines", line_dims=(0,), spatial_dim=2)
    data = np.zeros((RASTER_SEGMENTS, 2, 2), "f4")  # RASTER_SEGMENTS two-point lines
    run.apply(send.plot("a", lines, data))
    plot = run.plots["a"]
    assert plot.points == RASTER_SEGMENTS and plot.rasterized
    assert len(plot.data) == RASTER_SEGMENTS and plot.points == RASTER_SEGMENTS
    run.apply(send.plot("a", lines, data))
    assert run.plots["a"].version == plot.version  # the same glyphs: no rebuild


def test_replaces_near_the_image_limit_do_not_flip_the_figure_back_and_forth(
    run: RunState,
) -> None:
    send, scatter = Sender(), PlotSpec("scatter")
    for n, image in ((RASTER_POINTS, True), (RASTER_POINTS - 1, True), (RASTER_POINTS // 2, True)):
        run.apply(send.plot("a", scatter, np.zeros((n, 2), "f4")))
        assert run.plots["a"].rasterized is image and run.plots["a"].version == 0, n
    run.apply(send.plot("a", scatter, np.zeros((RASTER_POINTS // 2 - 1, 2), "f4")))
    assert not run.plots["a"].rasterized and run.plots["a"].version == 1


def test_growing_columns_in_many_pieces_read_any_rows_as_they_were_appended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(growing, "CHUNK_ROWS", 8)
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 20, 60)  # some small (into the tail), some a piece of their own
    whole = np.arange(int(sizes.sum()), dtype=np.float64)
    cols = GrowingColumns({"x": whole[:0]})
    start = 0
    for size in sizes:
        cols.append({"x": whole[start : start + size]})
        start += size
    for piece in cols.unstored()[::3]:  # some leave memory, read back from a copy
        cols.spill(piece, functools.partial(dict, {k: v.copy() for k, v in piece.read().items()}))
    assert cols.spilled > 0 and not cols.unstored()  # each piece is handed out once
    for a, b in rng.integers(0, len(whole), (200, 2)):
        a, b = sorted((int(a), int(b)))
        np.testing.assert_array_equal(cols.view(a, b)["x"], whole[a:b])


def test_a_frame_made_at_no_plausible_time_leaves_the_runs_times_alone(run: RunState) -> None:
    send = Sender()
    for made in (float("nan"), float("inf"), 1e20, True, "now"):
        run.apply(send("plot", "a", np.zeros((1, 2)), kind="scatter", spatial_dim=1, time=made))
    assert run.times is None
    run.apply(send("plot", "a", np.zeros((1, 2)), kind="scatter", spatial_dim=1, time=1.7e9))
    assert run.times == (1.7e9, 1.7e9)
