"""A run's clock (when it reached its steps) stays small however long the run, keeps the
first time of a step it went back to, comes back after a restart, and maps steps to the
page's x and back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamvis._clock import ROWS, StepClock, XMap
from streamvis._hub import Hub
from streamvis._specs import PlotSpec
from streamvis._store import Store
from test_store import LAYOUT, Sender, reopened
from test_store import small_chunks as small_chunks  # a fixture


def test_a_long_runs_clock_keeps_a_bounded_table_spread_over_it_and_its_newest_step() -> None:
    clock = StepClock()
    clock.extend((step, 1000.0 + step / 10) for step in range(100_000))
    steps, times = clock.table()
    assert len(steps) <= ROWS + 1
    assert steps[0] < 1000 and steps[-1] == 99_999 and times[-1] == 1000.0 + 9_999.9
    assert np.all(np.diff(steps) > 0)
    assert np.max(np.diff(steps)) <= 4 * 100_000 / ROWS  # spread evenly, no long gap


def test_a_step_gone_back_to_keeps_the_time_it_was_first_reached() -> None:
    clock = StepClock()
    clock.extend([(0, 10.0), (1, 11.0), (2, 12.0), (1, 50.0), (2, 51.0), (3, 52.0)])
    steps, times = clock.table()
    assert steps.tolist() == [0, 1, 2, 3] and times.tolist() == [10.0, 11.0, 12.0, 52.0]


def test_a_map_by_time_draws_steps_at_the_seconds_since_the_start_and_back() -> None:
    clock = StepClock()
    clock.extend([(0, 100.0), (10, 101.0), (20, 111.0)])
    xmap = XMap.by_time(clock, origin=100.0)
    assert [xmap.at(s) for s in (0, 5, 10, 15, 20, 30)] == [0.0, 0.5, 1.0, 6.0, 11.0, 21.0]
    assert xmap.at(-10) == -1.0  # before the first row: at the first two rows' pace
    assert [xmap.step(xmap.at(s)) for s in (0, 5, 15, 30)] == [0, 5, 15, 30]
    assert XMap.shifted(1000.0).at(1005) == 5.0 and XMap.shifted(1000.0).step(5) == 1005
    assert XMap.by_time(StepClock(), 0.0).identity and XMap().at(7) == 7


def test_a_clock_read_back_at_a_restart_stays_spread_as_the_run_goes_on() -> None:
    clock = StepClock()
    clock.extend((step, float(step)) for step in range(0, 1_000_000, 1_000_000 // ROWS))
    clock.extend((step, float(step)) for step in range(1_000_000, 1_020_000))  # then, live
    steps, _ = clock.table()
    assert len(steps) <= ROWS + 1
    assert np.sum(steps < 1_000_000) >= ROWS // 4  # the old steps keep their share


def test_times_set_back_never_make_the_map_go_back() -> None:
    clock = StepClock()
    clock.extend([(0, 100.0), (1, 101.0), (2, 90.0), (3, 102.0)])  # the clock was set back
    xmap = XMap.by_time(clock, origin=100.0)
    assert list(xmap.shown) == [0.0, 1.0, 1.0, 2.0]
    assert xmap.step(1.5) == 2.5 and xmap.step(50) >= 3


@pytest.mark.parametrize("steps", [50, 3 * ROWS + 37])  # +37: frames after the chunks
def test_a_restarted_server_knows_when_its_runs_reached_their_steps(
    tmp_path: Path,
    steps: int,
    small_chunks: int,
) -> None:
    """(Its plot restarts from chunks: the frames it replays are only the last ones.)"""
    sender = Sender(Hub(Store(tmp_path)))
    sender.send("layout", cells=LAYOUT["cells"])
    spec = PlotSpec("tandem_lines", append=True, palette="Viridis256").to_wire()

    def made(step: int) -> float:  # the pace changes halfway: 2 s a step, then 10
        half = steps // 2
        return 1_700_000_000.0 + 2 * min(step, half) + 10 * max(step - half, 0)

    for step in range(steps):
        sender.send("plot", "loss", np.array(step), np.zeros(3), **spec, step=step, time=made(step))
    live = sender.hub.runs["r"].clock.table()
    sender.hub.close()
    again = reopened(tmp_path)
    steps_at, times = again.runs["r"].clock.table()
    if steps <= ROWS:
        assert steps_at.tolist() == live[0].tolist() == list(range(steps))
    assert len(steps_at) <= ROWS + 1 and steps_at[-1] == steps - 1
    assert times.tolist() == [made(int(s)) for s in steps_at]  # each step's own time
    assert np.all(np.diff(steps_at) <= max(4 * steps / ROWS, 1))  # spread over the run
    xmap = XMap.by_time(again.runs["r"].clock, made(0))
    for step in (steps // 4, steps // 2, 3 * steps // 4):  # in both paces
        assert abs(xmap.at(step) - (made(step) - made(0))) <= 10 * max(4 * steps / ROWS, 1)
    again.close()
