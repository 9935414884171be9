"""The array -> column transforms: exact cases, then properties over random shapes and axes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamvis import ColorSpec, GridSpec
from streamvis._plots.columns import (
    call_rows,
    extent_of,
    line_columns,
    per_line,
    plot_columns,
    scatter_columns,
    tandem_columns,
)
from streamvis._specs import PlotSpec, normalize


def spec(kind: str, shape: tuple[int, ...], **kwargs: object) -> PlotSpec:
    return normalize(PlotSpec(kind, **kwargs), [shape])  # type: ignore[arg-type]


def test_scatter_points_in_c_order_with_spatial_axis_first() -> None:
    data = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])  # (spatial, point)
    columns, _ = scatter_columns(data, spec("scatter", data.shape, spatial_dim=0))
    np.testing.assert_array_equal(columns["x"], [1, 2, 3])
    np.testing.assert_array_equal(columns["y"], [10, 20, 30])
    assert set(columns) == {"x", "y"}


def test_float32_stays_float32_and_ints_become_float64() -> None:
    f32, _ = scatter_columns(np.zeros((3, 2), np.float32), spec("scatter", (3, 2)))
    i64, _ = scatter_columns(np.zeros((3, 2), np.int64), spec("scatter", (3, 2)))
    assert f32["x"].dtype == np.float32 and i64["x"].dtype == np.float64


def test_color_index_follows_the_chosen_axis() -> None:
    data = np.zeros((3, 4, 2))
    columns, _ = scatter_columns(
        data, spec("scatter", data.shape, color=ColorSpec("Viridis256", 1))
    )
    np.testing.assert_array_equal(columns["c"], np.tile(np.arange(4), 3))


def test_grid_offsets_put_slice_g_in_its_cell_rows_downward() -> None:
    # points (0,0) and (1,1) in each of 3 slices along axis 0; extent is 1 in x and y
    data = np.tile(np.array([[0.0, 0.0], [1.0, 1.0]]), (3, 1, 1))
    grid = GridSpec(dim=0, num_columns=2, padding_factor=1.5)
    columns, _ = scatter_columns(data, spec("scatter", data.shape, grid=grid))
    np.testing.assert_allclose(columns["x"], [0, 1, 1.5, 2.5, 0, 1])
    np.testing.assert_allclose(columns["y"], [0, 1, 0, 1, -1.5, -0.5])


def test_grid_axis_after_the_spatial_axis() -> None:
    data = np.zeros((2, 3))  # (spatial, slice): three points at the origin
    grid = GridSpec(dim=1, num_columns=3, padding_factor=2.0)
    columns, _ = scatter_columns(data, spec("scatter", data.shape, spatial_dim=0, grid=grid))
    np.testing.assert_allclose(columns["x"], [0, 2, 4])  # zero extent counts as 1


def test_extent_ignores_nan_and_inf() -> None:
    xy = np.array([[0.0, 0.0], [np.nan, 5.0], [2.0, np.inf], [4.0, 1.0]])
    assert extent_of(xy) == (4.0, 5.0)


def test_multi_lines_make_segments_between_consecutive_points() -> None:
    # 2 lines (axis 0) of 3 points (axis 2), spatial axis 1
    data = np.array([[[0, 1, 2], [0, 0, 0]], [[5, 6, 7], [1, 1, 1]]], dtype=float)
    columns, _, ends = line_columns(
        data, spec("multi_lines", data.shape, line_dims=(0,), spatial_dim=1)
    )
    np.testing.assert_array_equal(columns["x0"], [0, 1, 5, 6])
    np.testing.assert_array_equal(columns["x1"], [1, 2, 6, 7])
    np.testing.assert_array_equal(columns["y1"], [0, 0, 1, 1])
    assert ends is not None
    np.testing.assert_array_equal(ends.xy, [[2, 0], [7, 1]])


def test_appended_points_join_each_line_to_its_previous_end() -> None:
    first = np.array([[[0.0, 0.0]], [[10.0, 0.0]]])  # (line, point, spatial): one point per line
    s = spec("multi_lines", first.shape, line_dims=(0,), spatial_dim=2, append=True)
    columns, _, ends = line_columns(first, s)
    assert len(columns["x0"]) == 0
    columns, _, ends = line_columns(first + 1, s, ends=ends)
    np.testing.assert_array_equal(columns["x0"], [0, 10])
    np.testing.assert_array_equal(columns["x1"], [1, 11])


def test_tandem_row_has_shared_x_and_one_column_per_line() -> None:
    columns = tandem_columns(np.array(3), np.array([0.5, 0.25], np.float32))
    assert list(columns) == ["x", "y0", "y1"]
    assert columns["x"].tolist() == [3.0] and columns["y1"].dtype == np.float32


def test_a_page_gets_tandem_rows_as_one_row_per_line() -> None:
    x = np.arange(3.0)
    ys = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    rows = per_line({"x": x, "y0": ys[0], "y1": ys[1]})
    assert [xs.tolist() for xs in rows["xs"]] == [[0, 1, 2]] * 2
    assert [y.tolist() for y in rows["ys"]] == ys.tolist()
    assert rows["c"].tolist() == [0, 1]


@pytest.mark.filterwarnings("error")  # a huge x must not warn (pages are built in callbacks)
def test_a_page_gets_line_x_as_float32_only_where_that_is_exact() -> None:
    steps = per_line({"x": np.arange(3.0), "y0": np.zeros(3, np.float32)})
    assert steps["xs"][0].dtype == np.float32
    times = np.array([1.7e9 + 0.25, 1.7e9 + 0.5])  # float32 would round these
    exact = per_line({"x": times, "y0": np.zeros(2, np.float32)})
    assert exact["xs"][0].dtype == np.float64 and exact["xs"][0].tolist() == times.tolist()
    for x in ([np.nan, 1.0], [1e300, 1.0]):  # a gap stays a gap; a huge x stays as it is
        line = per_line({"x": np.array(x), "y0": np.zeros(2, np.float32)})["xs"][0]
        np.testing.assert_array_equal(line, x)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[tuple[int, ...], int, int | None, int | None, int]:
    ndim = draw(st.integers(2, 4))
    shape = list(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    spatial = draw(st.integers(0, ndim - 1))
    shape[spatial] = 2
    others = [d for d in range(ndim) if d != spatial]
    color = draw(st.none() | st.sampled_from(others))
    grid = draw(st.none() | st.sampled_from(others))
    return tuple(shape), spatial, color, grid, draw(st.integers(1, 3))


def index_of(shape: tuple[int, ...], flat: int) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat, shape))


@settings(max_examples=200, deadline=None)
@given(layouts())
def test_every_element_lands_in_exactly_one_point_with_its_color_and_cell(case: tuple) -> None:  # type: ignore[type-arg]
    shape, spatial, color, grid, ncols = case
    data = np.arange(math.prod(shape), dtype=np.float64).reshape(shape)
    s = spec(
        "scatter", shape, spatial_dim=spatial,
        color=None if color is None else ColorSpec("Viridis256", color),
        grid=None if grid is None else GridSpec(grid, ncols, 1.0),
    )  # fmt: skip
    columns, pts = scatter_columns(data, s)
    rest = tuple(n for d, n in enumerate(shape) if d != spatial)
    assert len(columns["x"]) == math.prod(rest)
    ext = pts.extent or (1.0, 1.0)
    seen = set()
    for p in range(len(columns["x"])):
        idx = list(index_of(rest, p))
        full = [*idx[:spatial], 0, *idx[spatial:]]
        x, y = data[tuple(full)], data[tuple([*full[:spatial], 1, *full[spatial + 1 :]])]
        dx = dy = 0.0
        if grid is not None:
            g = full[grid]
            dx, dy = (g % ncols) * ext[0], -(g // ncols) * ext[1]
        assert columns["x"][p] == x + dx and columns["y"][p] == y + dy
        if color is not None:
            assert columns["c"][p] == full[color]
        seen.add((x, y))
    assert len(seen) == len(columns["x"])  # each element pair used once


@settings(max_examples=150, deadline=None)
@given(layouts(), st.data())
def test_lines_keep_their_points_in_order_and_one_cell_per_line(
    case: tuple[Any, ...], draw: st.DataObject
) -> None:
    shape, spatial, color, _, ncols = case
    others = [d for d in range(len(shape)) if d != spatial]
    line_dims = tuple(draw.draw(st.permutations(others)))[: draw.draw(st.integers(0, len(others)))]
    grid = draw.draw(st.none() | st.sampled_from(line_dims)) if line_dims else None
    data = np.arange(math.prod(shape), dtype=np.float64).reshape(shape)
    s = spec(
        "multi_lines", shape, spatial_dim=spatial, line_dims=line_dims,
        color=None if color is None else ColorSpec("Viridis256", color),
        grid=None if grid is None else GridSpec(grid, ncols, 1.0),
    )  # fmt: skip
    columns, pts, _ = line_columns(data, s)
    point_dims = [d for d in others if d not in line_dims]
    lines = math.prod(shape[d] for d in line_dims)
    per_line = math.prod(shape[d] for d in point_dims)
    assert len(columns["x0"]) == lines * max(per_line - 1, 0)
    ext = pts.extent or (1.0, 1.0)
    order = [*line_dims, *point_dims]
    sizes = tuple(shape[d] for d in order)
    for seg in range(len(columns["x0"])):
        line, k = divmod(seg, per_line - 1)
        idx = dict(zip(order, index_of(sizes, line * per_line + k), strict=True))
        idx[spatial] = 0
        start_x = data[tuple(idx[d] for d in range(len(shape)))]
        dx = 0.0
        if grid is not None:
            dx = (idx[grid] % ncols) * ext[0]
        assert columns["x0"][seg] == start_x + dx
        if color is not None:
            assert columns["c"][seg] == idx[color]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_the_rows_of_a_call_are_known_from_its_shape_alone(draw: st.DataObject) -> None:
    """What a stored frame records of the rows its plot then held (a page at its step shows
    those) matches the rows the calls make, appends joining on the lines before them."""
    kind = draw.draw(st.sampled_from(["scatter", "multi_lines"]))
    ndim = draw.draw(st.integers(2, 4))
    spatial = draw.draw(st.integers(0, ndim - 1))
    others = [d for d in range(ndim) if d != spatial]
    line_dims = tuple(draw.draw(st.permutations(others)))[: draw.draw(st.integers(0, ndim - 1))]
    ends, lines = None, None
    for _ in range(draw.draw(st.integers(1, 4))):  # a replace, then appends
        shape = [draw.draw(st.integers(1, 3)) for _ in range(ndim)]
        shape[spatial] = 2
        data = np.ones(shape)
        kwargs: dict[str, Any] = {"line_dims": line_dims} if kind == "multi_lines" else {}
        s = spec(kind, tuple(shape), spatial_dim=spatial, **kwargs)
        columns, _, ends = plot_columns(s, (data,), None, ends)
        rows, lines = call_rows(s, tuple(shape), lines)
        assert len(columns["x" if kind == "scatter" else "x0"]) == rows
    assert call_rows(PlotSpec("tandem_lines"), (3,)) == (1, None)
