"""A page's plots at a step, read from history: plain calls, the store and the drawing
thread stood in for by a dict of frames and a job run at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from streamvis._history import Stored
from streamvis._page.history import PastPlots
from streamvis._plotstate import at_step
from streamvis._protocol import Frame
from streamvis._specs import PlotSpec
from streamvis._state import RunState


def frame(step: int) -> Frame:
    opts = {**PlotSpec("scatter", spatial_dim=1).to_wire(), "step": step}
    return Frame("plot", "r", "c", step + 1, "pts", opts, (np.full((1, 2), float(step)),))


class Reader:
    """The store's frames by step, counting what is read."""

    def __init__(self) -> None:
        self.frames = {step: Stored(step + 10, 0.0, step, frame(step)) for step in range(20)}
        self.read: list[int] = []

    def __call__(self, plot: str, step: int | float) -> Stored | None:
        assert type(step) is int
        self.read.append(step)
        return self.frames.get(step)


def test_a_playing_page_reads_the_next_steps_ahead_and_shows_them_at_once() -> None:
    run = RunState("r")
    run.apply(Frame("layout", "r", "c", 0, opts={"cells": {"pts": [0, 0, 1, 1]}}))
    run.apply(frame(19))
    live, reader, shown = run.plots["pts"], Reader(), []

    def submit(work: Callable[[], Any], then: Callable[[Any], None]) -> None:
        then(work())  # the drawing thread, at once

    past = PastPlots(reader, submit, lambda names, step: shown.append((names, step)))
    assert past.at("pts", live, 5, ahead=[6, 7]) is None  # to be read, with the two after
    past.start()
    assert reader.read == [5, 6, 7] and shown == [({"pts"}, 5), ({"pts"}, 6), ({"pts"}, 7)]
    at_6 = past.at("pts", live, 6, ahead=[7, 8])  # played on: read already
    assert at_6 is not None and at_6.data.view()["x"].tolist() == [6.0]
    past.start()
    assert reader.read == [5, 6, 7, 8]  # only the new step ahead
    at_9 = past.at("pts", live, 9)  # not playing: nothing ahead
    past.start()
    assert at_9 is None and reader.read == [5, 6, 7, 8, 9]


def test_an_append_frame_of_a_plot_replaced_since_shows_the_plot_as_now() -> None:
    run = RunState("r")
    run.apply(Frame("layout", "r", "c", 0, opts={"cells": {"pts": [0, 0, 1, 1]}}))
    appended = {**PlotSpec("scatter", append=True, spatial_dim=1).to_wire(), "step": 1}
    run.apply(Frame("plot", "r", "c", 1, "pts", appended, (np.zeros((2, 2)),)))
    run.apply(frame(5))  # replaced since (append=False)
    past = at_step(run.plots["pts"], Frame("plot", "r", "c", 1, "pts", appended), 1, rows=2)
    assert past is None  # which rows it held then is not known from the plot as it is now
