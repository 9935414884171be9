"""Scatters drawn as images: where each point lands, which color wins, and which view is drawn."""

from __future__ import annotations

import numpy as np
import pytest

from streamvis._plots import raster
from streamvis._plots.raster import (
    MARKER_SIZE,
    MAX_PIXELS,
    Bounds,
    PageFrame,
    Viewport,
    auto_view,
    bounds_of,
    box_of,
    color_keys,
    packed_rgba,
    rasterize,
    rasterize_pieces,
    rasterize_segments,
    viewport,
)

VIEW = Viewport(0.0, 100.0, 0.0, 50.0, width=100, height=50)  # one pixel per unit
PALETTE = packed_rgba(["#ff0000", "#0000ff"])
RED, BLUE = PALETTE


def draw(x: list[float], y: list[float], **kwargs: object) -> np.ndarray:
    return rasterize(np.array(x, "f4"), np.array(y, "f4"), VIEW, PALETTE, **kwargs)  # type: ignore[arg-type]


def test_pixels_are_the_bytes_r_g_b_a_that_image_rgba_reads() -> None:
    pixel = packed_rgba(["#102030"], alpha=1.0)
    assert pixel.view(np.uint8).tolist() == [0x10, 0x20, 0x30, 255]


def test_a_point_is_a_disk_of_the_marker_size_around_its_pixel_row_zero_at_the_bottom() -> None:
    image = draw([10.5], [3.5])
    rows, cols = np.nonzero(image)
    assert image[3, 10] == RED and image[0, 10] == 0  # row 3 holds y in [3, 4)
    assert rows.min() == 3 - MARKER_SIZE // 2 and rows.max() == 3 + MARKER_SIZE // 2
    assert cols.min() == 10 - MARKER_SIZE // 2 and cols.max() == 10 + MARKER_SIZE // 2
    assert image[1, 8] == 0  # a disk, not a square: the corners stay empty
    assert (image[3] != 0).sum() == MARKER_SIZE


def test_a_later_point_covers_an_earlier_one_where_they_overlap() -> None:
    image = draw([10.5, 11.5, 10.5], [10.5, 10.5, 10.5], color=np.array([0, 1, 0]), levels=2)
    assert image[10, 10] == RED  # the third point, drawn last
    assert image[10, 13] == BLUE  # only the second point reaches here


def test_points_outside_the_view_or_not_finite_draw_nothing_but_edges_draw_partly() -> None:
    assert not draw([-50.0, 500.0, np.nan, np.inf], [10.0, 10.0, 10.0, np.nan]).any()
    edge = draw([-1.0], [25.5])  # centered a pixel left of the view: its right part shows
    assert edge[25, 0] == RED and edge[25, 2] == 0


def test_color_keys_map_indices_as_the_pages_linear_color_mapper() -> None:
    assert color_keys(np.array([0, 1]), levels=2, ncolors=256).tolist() == [0, 255]
    assert color_keys(np.arange(5), levels=5, ncolors=2).tolist() == [0, 0, 1, 1, 1]
    assert color_keys(np.array([0]), levels=1, ncolors=3).tolist() == [0]


def test_bounds_ignore_non_finite_points_and_widen_a_single_point() -> None:
    x = np.array([1.0, np.nan, 3.0, 2.0])
    y = np.array([5.0, 0.0, 5.0, np.inf])
    assert bounds_of(x, y) == Bounds(1.0, 3.0, 4.5, 5.5)
    assert bounds_of(np.array([np.nan]), np.array([1.0])) == Bounds(-0.5, 0.5, -0.5, 0.5)


def test_the_page_zoomed_view_is_drawn_and_its_auto_ranges_follow_new_data() -> None:
    old, new = Bounds(0, 10, 0, 10), Bounds(0, 20, 0, 10)
    assert viewport(new, PageFrame()) == auto_view(new)  # the page has said nothing yet
    following = auto_view(old, (300, 200))
    page = PageFrame((following.x0, following.x1), (following.y0, following.y1), (300, 200), old)
    assert viewport(new, page) == auto_view(new, (300, 200))
    zoomed = PageFrame((2.0, 4.0), (1.0, 3.0), (300, 200), old)
    assert viewport(new, zoomed) == Viewport(2.0, 4.0, 1.0, 3.0, 300, 200)
    flipped = PageFrame((4.0, 2.0), (1.0, 3.0), (300, 200), old)
    assert viewport(new, flipped) == Viewport(2.0, 4.0, 1.0, 3.0, 300, 200)
    fixed_x = PageFrame((2.0, 4.0), (following.y0, following.y1), (300, 200), old)
    follows_y = auto_view(new, (300, 200))  # each axis on its own: x stays, y follows the data
    assert viewport(new, fixed_x) == Viewport(2.0, 4.0, follows_y.y0, follows_y.y1, 300, 200)
    # New bounds just sent, the page not caught up: its range is still the old auto range.
    behind = PageFrame(page.x_range, page.y_range, (300, 200), new, before=old)
    assert viewport(new, behind) == auto_view(new, (300, 200))  # not a zoom to the old range
    huge = PageFrame(None, None, (10_000, 200), None)
    assert viewport(new, huge).width == MAX_PIXELS


def draw_segments(ends: list[tuple[float, float, float, float]], **kwargs: object) -> np.ndarray:
    x0, y0, x1, y1 = (np.array(v, "f4") for v in zip(*ends, strict=True))
    return rasterize_segments(x0, y0, x1, y1, VIEW, PALETTE, **kwargs)  # type: ignore[arg-type]


def test_a_segment_is_a_line_one_pixel_wide_through_its_ends() -> None:
    image = draw_segments([(10.5, 10.5, 20.5, 15.5)])
    rows, cols = np.nonzero(image)
    assert image[10, 10] == RED and image[15, 20] == RED
    assert sorted(set(cols)) == list(range(10, 21))  # no gap along the longer axis
    assert len(rows) <= 2 * 11  # thin: about one pixel per column
    assert not draw_segments([(np.nan, 1.0, 2.0, 3.0)]).any()


def test_a_segment_crossing_the_view_is_drawn_inside_it_only_and_later_ones_on_top() -> None:
    image = draw_segments(
        [(-1e9, 25.5, 1e9, 25.5), (50.5, -1e9, 50.5, 1e9)], color=np.array([0, 1]), levels=2
    )
    assert (image[25] != 0).all() and (image[:, 50] != 0).all()
    assert image[25, 50] == BLUE and image[25, 49] == RED  # the second crosses the first
    assert (image != 0).sum() == 100 + 50 - 1


def test_a_segment_cut_at_the_edge_of_the_view_has_no_gaps() -> None:
    palette = packed_rgba(["#ff0000"])
    for width in (400, 1600):  # the cut puts samples on whole pixels, where rounding bites
        view = Viewport(0.0, 1.0, 0.0, 1.0, width, 300)
        for x0, x1 in ((0.0, 1.0), (-0.5, 1.5), (-1e6, 1e6)):
            a, b, c, d = (np.array([v]) for v in (x0, 0.5, x1, 0.5))
            image = rasterize_segments(a, b, c, d, view, palette)
            assert (image[150] != 0).all(), (width, x0, x1)


def test_a_plot_in_pieces_and_batches_draws_as_it_would_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(1)
    x0, y0 = (rng.uniform(0, 100, 3000).astype("f4") for _ in range(2))
    x1, y1 = x0 + 2, y0 - 1  # short: within the sampling budget, which batches share
    color = rng.integers(0, 2, 3000)
    whole = rasterize_segments(x0, y0, x1, y1, VIEW, PALETTE, color, 2)
    columns = {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "c": color}
    pieces = [
        {k: v[a:b] for k, v in columns.items()} for a, b in ((0, 700), (700, 2999), (2999, 3000))
    ]
    for rows in (1 << 20, 1000):  # one batch, then batches of a few pieces each
        monkeypatch.setattr(raster, "BATCH_ROWS", rows)
        drawn = rasterize_pieces("multi_lines", pieces[::-1], 3000, VIEW, PALETTE, 2)
        np.testing.assert_array_equal(drawn, whole)
    newest = [{"x": x1, "y": y1}, {"x": x0[:10], "y": y0[:10]}]  # given newest first
    points = rasterize_pieces("scatter", newest, 3010, VIEW, PALETTE)
    both = rasterize(np.concatenate([x0[:10], x1]), np.concatenate([y0[:10], y1]), VIEW, PALETTE)
    np.testing.assert_array_equal(points, both)


def test_boxes_of_parts_merge_into_the_box_of_the_whole() -> None:
    x, y = np.array([3.0, np.nan, -1.0, 7.0]), np.array([0.0, 5.0, 2.0, np.inf])
    box = box_of(x[2:], y[2:], box_of(x[:2], y[:2]))
    assert box == (-1.0, 3.0, 0.0, 2.0)
    assert bounds_of(np.empty(0), np.empty(0), box) == bounds_of(x, y)
    assert box_of(np.array([np.nan]), np.array([1.0])) is None


def test_a_long_drawing_shows_the_newest_rows_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(raster, "BATCH_ROWS", 1)
    monkeypatch.setattr(raster, "PROGRESS_SECONDS", 0.0)  # every batch
    newest = [{"x": np.array([20.5], "f4"), "y": np.array([20.5], "f4")},
              {"x": np.array([60.5], "f4"), "y": np.array([30.5], "f4")}]  # fmt: skip
    seen: list[np.ndarray] = []
    whole = rasterize_pieces("scatter", newest, 2, VIEW, PALETTE, progress=seen.append)
    assert len(seen) == 2 and seen[0][20, 20] == RED and not seen[0][30, 60]
    np.testing.assert_array_equal(seen[1], whole)
