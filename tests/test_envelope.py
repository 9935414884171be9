"""Envelopes of long line plots: bounded, faithful to every bucket, exact inside a window."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamvis._plots import envelope
from streamvis._plots.envelope import Envelope
from streamvis._plots.growing import GrowingColumns


def rows(n: int, lines: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    columns = {"x": np.arange(n, dtype=np.float64)}
    for k in range(lines):
        columns[f"y{k}"] = rng.normal(size=n).astype(np.float32)
    return columns


def grown(columns: dict[str, np.ndarray], chunks: list[int]) -> tuple[Envelope, GrowingColumns]:
    """An envelope extended as a page would see it: after each chunk of appended rows."""
    data = GrowingColumns({k: v[:0] for k, v in columns.items()})
    env = Envelope(data.view())
    start = 0
    for size in chunks:
        data.append({k: v[start : start + size] for k, v in columns.items()})
        start += size
        env.extend(data.view(env.rows))
    return env, data


def check_buckets(env: Envelope, columns: dict[str, np.ndarray]) -> None:
    """Every bucket holds exactly its rows' least and greatest value, and where they are."""
    b = env.buckets
    ends = [*b.start[1:], env.rows]
    assert b.start[0] == 0 and all(e > s for s, e in zip(b.start, ends, strict=True))
    for i, (s, e) in enumerate(zip(b.start, ends, strict=True)):
        assert b.x_first[i] == columns["x"][s] and b.x_last[i] == columns["x"][e - 1]
        for k in b.lo:
            part = columns[k][s:e]
            assert b.lo[k][i] == part.min() and b.hi[k][i] == part.max()
            assert columns[k][b.at_lo[k][i]] == part.min() and s <= b.at_lo[k][i] < e
            assert columns[k][b.at_hi[k][i]] == part.max() and s <= b.at_hi[k][i] < e


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=30), st.integers(0, 2**16))
def test_buckets_stay_few_and_true_however_rows_arrive(chunks: list[int], seed: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(envelope, "BUCKETS", 4)
        columns = rows(sum(chunks), seed=seed)
        env, data = grown(columns, chunks)
        assert len(env.buckets) <= 8
        if env.rows:
            check_buckets(env, columns)
        view = env.view(data.view(env.rows))
        for k in ("y0", "y1", "y2"):  # the whole plot's extremes survive, and only real values
            assert view[k].min() == columns[k].min() and view[k].max() == columns[k].max()
            assert np.isin(view[k], columns[k]).all()
        assert view["x"][-1] == columns["x"][-1]


def test_a_million_rows_draw_as_a_few_thousand() -> None:
    columns = rows(1_000_000, lines=2)
    env, data = grown(columns, [1000] * 1000)
    view = env.view(data.view(env.rows))
    assert len(view["x"]) <= 4 * envelope.BUCKETS + envelope.TAIL_ROWS
    assert view["y1"].max() == columns["y1"].max() and view["x"][-1] == 999_999
    assert np.all(np.diff(view["x"]) >= 0)


def test_extremes_are_drawn_in_the_order_they_occurred() -> None:
    falling = {"x": np.arange(8.0), "y0": np.array([9, 8, 7, 6, 5, 4, 3, 2], np.float32)}
    rising = {"x": falling["x"], "y0": falling["y0"][::-1]}
    view = envelope.to_columns(envelope.summarize(falling, 0, 4))  # two buckets of four rows
    np.testing.assert_array_equal(view["x"], [0, 3, 4, 7])
    np.testing.assert_array_equal(view["y0"], [9, 6, 5, 2])
    view = envelope.to_columns(envelope.summarize(rising, 0, 4))
    np.testing.assert_array_equal(view["y0"], [2, 5, 6, 9])


def test_nan_rows_break_no_bucket() -> None:
    columns = {"x": np.arange(6.0), "y0": np.array([np.nan, 1, np.nan, np.nan, np.nan, 2])}
    buckets = envelope.summarize(columns, 0, 3)
    np.testing.assert_array_equal(buckets.lo["y0"], [1, 2])
    all_nan = envelope.summarize({"x": np.arange(2.0), "y0": np.full(2, np.nan)}, 0, 2)
    assert np.isnan(all_nan.lo["y0"]).all()


def test_a_window_shows_its_rows_exactly_and_the_rest_summed_up() -> None:
    columns = rows(100_000)
    env, data = grown(columns, [10_000] * 10)
    window = env.window(50_000.0, 50_500.0, 100_000)
    assert window is not None and window[0] <= 50_000 and window[1] > 50_500
    view = env.view(data.view(env.rows), window, data.view(*window))
    inside = (view["x"] >= 50_000) & (view["x"] <= 50_500)
    np.testing.assert_array_equal(view["x"][inside], np.arange(50_000, 50_501))
    np.testing.assert_array_equal(view["y2"][inside], columns["y2"][50_000:50_501])
    assert len(view["x"]) < 3 * envelope.DETAIL_ROWS and np.all(np.diff(view["x"]) >= 0)
    assert view["x"][0] == 0 and view["x"][-1] == 99_999


def test_a_reversed_x_axis_shows_the_same_window() -> None:
    env, _ = grown(rows(100_000), [100_000])
    assert env.window(60_000.0, 40_000.0, 100_000) == env.window(40_000.0, 60_000.0, 100_000)
    assert env.window(1e9, -1e9, 100_000) is None


def test_a_window_over_everything_or_over_unordered_x_is_the_whole_view() -> None:
    env, _ = grown(rows(10_000), [10_000])
    assert env.window(-5.0, 20_000.0, 10_000) is None
    shuffled = rows(10_000)
    shuffled["x"] = np.random.default_rng(1).permutation(shuffled["x"])
    env, _ = grown(shuffled, [10_000])
    assert not env.monotonic and env.window(10.0, 20.0, 10_000) is None
