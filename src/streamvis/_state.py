"""The server's truth: every run's layout and plots (:mod:`_plotstate`), updated by
admitting frames (checked against the run's form) and applying them once stored. No I/O."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._clock import StepClock
from ._errors import ArgumentError, UnknownPlot
from ._plots.columns import call_rows
from ._plotstate import PlotState, replaced
from ._protocol import Frame, made_at
from ._specs import (
    Cell,
    PlotSpec,
    check_compatible,
    check_in_layout,
    check_layout,
    data_shape,
    merge_layout,
    normalize,
)

__all__ = ["Admitted", "RunState"]

log = logging.getLogger("streamvis.server")


@dataclass(frozen=True)
class Admitted:
    """A frame checked against its run (and the frames admitted before it), to apply once
    it is stored: a plot frame carries its normalized spec and its new fig_kwargs."""

    frame: Frame
    spec: PlotSpec | None = None
    fig: dict[str, Any] | None = None
    cells: dict[str, Cell] | None = None  # a layout's, as it applies
    id: int = 0  # its place in the run's history (the store's frame id)
    rows: int | None = None  # a plot frame's: the rows its plot holds once it is applied


@dataclass(frozen=True)
class _Placed:
    """What checking a plot frame needs of the plot before it: no data, only its form."""

    spec: PlotSpec
    shape: tuple[int, ...]
    fig: dict[str, Any]
    rows: int = 0  # the rows it holds
    lines: int | None = None  # how many lines its rows end with (appends join on them)


@dataclass(eq=False)
class RunState:
    """A run: its layout, its plots, and the last sequence number applied per client.

    Frames are first admitted (:meth:`admit`: checked, against the frames admitted before
    them too), then applied (:meth:`commit`) once stored. Between the two, only the run's
    form moves ahead (its layout, and each plot's spec, shape and fig_kwargs); if storing
    fails, :meth:`rollback` takes it back to what was applied.
    """

    name: str
    cells: dict[str, Cell] | None = None
    layout_version: int = 0
    plots: dict[str, PlotState] = field(default_factory=dict)
    last_seq: dict[str, int] = field(default_factory=dict)
    # clients whose plot lost its place -> the connection that was told to restore it
    restoring: dict[str, object] = field(default_factory=dict)
    senders: dict[str, object] = field(default_factory=dict)  # client -> its last connection
    _specs: dict[str, tuple[Any, Any, PlotSpec]] = field(default_factory=dict)
    _cells: dict[str, Cell] | None = None  # as admitted
    _placed: dict[str, _Placed] = field(default_factory=dict)  # as admitted
    _admitted: dict[str, int] = field(default_factory=dict)  # last seq admitted per client
    epoch: int = 0  # counts rollbacks: frames admitted before one are not stored
    next_id: int = 1  # the id the next frame admitted takes (ids only grow, gaps allowed)
    folded: int = 0  # replaces clients folded into later ones before sending (fell behind)
    steps: tuple[int, int] | None = None  # the least and greatest step of its frames, if any
    last_step: int | None = None  # the step of the last frame that had one
    rewinds: int = 0  # times a frame's step went back, the last time from, to:
    rewound: tuple[int, int] | None = None
    times: tuple[float, float] | None = None  # when its first and last plot frames were made
    clock: StepClock = field(default_factory=StepClock)  # when it reached its steps

    def _spec(self, frame: Frame) -> PlotSpec:
        """The frame's checked spec; a plot's frames mostly repeat the last one's options."""
        assert frame.name is not None
        shapes = [a.shape for a in frame.arrays]
        cached = self._specs.get(frame.name)
        if cached is not None and cached[0] == frame.opts and cached[1] == shapes:
            return cached[2]
        spec = normalize(PlotSpec.from_wire(frame.opts), shapes)
        self._specs[frame.name] = (frame.opts, shapes, spec)
        return spec

    def is_duplicate(self, frame: Frame) -> bool:
        """True if this client's frame (or a later one) was already admitted."""
        return frame.seq <= self._admitted.get(frame.cid, -1)

    def apply(
        self,
        frame: Frame,
        check_fig: Callable[[Mapping[str, Any]], None] | None = None,
        *,
        replay: bool = False,
        frame_id: int | None = None,
    ) -> set[str]:
        """Admit and apply ``frame`` at once; return the names of plots that changed ('' for
        the layout). Raises ArgumentError (the frame is refused and nothing changes).

        With ``replay`` (frames from the run's store, each accepted once, with its
        ``frame_id``) nothing is skipped as a duplicate.
        """
        if frame_id is not None:
            self.next_id = max(self.next_id, frame_id)
        admitted = self.admit(frame, check_fig, replay=replay)
        return self.commit(admitted) if admitted is not None else set()

    def admit(
        self,
        frame: Frame,
        check_fig: Callable[[Mapping[str, Any]], None] | None = None,
        *,
        replay: bool = False,
    ) -> Admitted | None:
        """Check ``frame`` after those admitted before it; None if it is a duplicate.

        Raises ArgumentError (UnknownPlot if its plot has no place). ``check_fig`` validates
        new figure keyword arguments (the server passes Bokeh's own check).
        """
        if not replay and self.is_duplicate(frame):
            return None
        try:
            admitted = self._admit(frame, check_fig)
        except UnknownPlot:
            raise  # not taken: the client sends it again, after restoring its layout
        except ArgumentError:
            self._admitted[frame.cid] = max(frame.seq, self._admitted.get(frame.cid, -1))
            raise
        self._admitted[frame.cid] = max(frame.seq, self._admitted.get(frame.cid, -1))
        self.next_id += 1
        return admitted

    def _admit(
        self, frame: Frame, check_fig: Callable[[Mapping[str, Any]], None] | None
    ) -> Admitted:
        if frame.op == "layout":
            cells = check_layout(frame.opts.get("cells", {}))
            if frame.restore and self._cells is not None:  # beside what others laid out
                cells = merge_layout(self._cells, cells)
            self._cells = cells
            return Admitted(frame, cells=cells, id=self.next_id)
        if frame.op == "clear":
            self._cells, self._placed = None, {}
        elif frame.op == "plot":
            assert frame.name is not None
            check_in_layout(frame.name, self._cells)
            spec = self._spec(frame)
            old = self._placed.get(frame.name)
            fig = dict(spec.fig_kwargs) if spec.fig_kwargs is not None else None
            if fig is not None and (old is None or fig != old.fig) and check_fig is not None:
                try:
                    check_fig(fig)
                except Exception as exc:
                    raise ArgumentError(
                        f"plot {frame.name!r}: bad fig_kwargs {fig!r}: {exc}"
                    ) from exc
            shape = data_shape(spec, frame.arrays)
            if old is not None:
                check_compatible(frame.name, old.spec, old.shape, spec, shape)
            kept_fig = fig if fig is not None else (old.fig if old is not None else {})
            joins = old is not None and spec.append
            rows, lines = call_rows(spec, shape, old.lines if old and joins else None)
            rows += old.rows if old and joins else 0
            self._placed[frame.name] = _Placed(spec, shape, kept_fig, rows, lines)
            held = None if spec.kind == "tandem_lines" else rows  # lines show every row
            return Admitted(frame, spec, fig, id=self.next_id, rows=held)
        return Admitted(frame, id=self.next_id)

    def merge_seqs(self, seqs: Mapping[str, int]) -> None:
        """Take the stored last seq of each client (frames it resends are duplicates)."""
        for cid, seq in seqs.items():
            self.last_seq[cid] = max(seq, self.last_seq.get(cid, -1))
            self._admitted[cid] = max(seq, self._admitted.get(cid, -1))

    def rollback(self) -> None:
        """Forget what was admitted but not applied (storing it failed, and so does storing
        everything admitted after it). Every client with frames among them is fenced off
        on the connection that sent them, until it resends them (see ``restoring``)."""
        self.epoch += 1
        for cid, seq in self._admitted.items():
            if seq > self.last_seq.get(cid, -1) and cid in self.senders:
                self.restoring[cid] = self.senders[cid]
        self._admitted = dict(self.last_seq)
        self.settle()

    def settle(self) -> None:
        """Check the frames to come against the plots as they are now (not as admitted)."""
        self._cells = self.cells
        self._placed = {
            name: _Placed(plot.spec, plot.shape, plot.fig_kwargs, plot.points, _lines(plot))
            for name, plot in self.plots.items()
        }

    def commit(self, admitted: Admitted) -> set[str]:
        """Apply an admitted frame (stored, or needing no store); return what changed."""
        frame = admitted.frame
        self.last_seq[frame.cid] = max(frame.seq, self.last_seq.get(frame.cid, -1))
        self._admitted[frame.cid] = max(frame.seq, self._admitted.get(frame.cid, -1))
        if frame.op == "layout":
            cells = admitted.cells or check_layout(frame.opts.get("cells", {}))
            if cells == self.cells:  # a restarted script sends the same layout: keep the pages
                return set()
            self.cells = cells
            self.layout_version += 1
            return {""}
        if frame.op == "clear":
            self.cells, self.plots = None, {}
            self.layout_version += 1
            return {""}
        if frame.op != "plot" or admitted.spec is None:
            return set()
        assert frame.name is not None
        folded, step, made = frame.opts.get("folded"), frame.opts.get("step"), made_at(frame.opts)
        if made is not None:
            self.take_times((made, made))
        if type(folded) is int and folded > 0:
            self.folded += folded
        if type(step) is int:
            self.take_steps((step, step))
            if self.last_step is not None and step < self.last_step:
                self.rewinds += 1  # a run resumed from a checkpoint, say
                self.rewound = (self.last_step, step)
            self.last_step = step
            self.clock.take(step, made if made is not None else time.time())  # else: arrival
        spec, fig = admitted.spec, admitted.fig
        old = self.plots.get(frame.name)
        if old is not None and spec.append:
            old.append(spec, frame.arrays, admitted.id)
        else:
            self._replace(frame.name, old, spec, frame.arrays, admitted.id)
        plot = self.plots[frame.name]
        if type(bad := frame.opts.get("bad")) is int and bad > 0 and spec.kind == "tandem_lines":
            plot.take_bad([(float(frame.arrays[0].reshape(-1)[0]), bad)])  # NaN, inf values
        if fig is not None and fig != plot.fig_kwargs:
            plot.fig_kwargs = fig
            plot.version += 1
        return {frame.name}

    def take_steps(self, steps: tuple[int, int] | None) -> None:
        """Widen the run's range of steps to take in ``steps``."""
        self.steps = _widened(self.steps, steps)

    def take_times(self, times: tuple[float, float] | None) -> None:
        """Widen the run's range of times to take in ``times``."""
        self.times = _widened(self.times, times)

    def _replace(
        self,
        name: str,
        old: PlotState | None,
        spec: PlotSpec,
        arrays: tuple[np.ndarray, ...],
        frame_id: int,
    ) -> None:
        self.plots[name] = replaced(name, old, spec, arrays, frame_id)


def _lines(plot: PlotState) -> int | None:
    """How many lines the plot's rows end with (its latest replace's, if not made yet)."""
    if plot.raw is not None:
        return call_rows(plot.spec, plot.shape)[1]
    return None if plot.ends is None else len(plot.ends.xy)


def _widened(span: tuple[Any, Any] | None, more: tuple[Any, Any] | None) -> Any:
    """The least range holding ``span`` and ``more`` (either may be None: none)."""
    if more is None or span is None:
        return span if more is None else more
    return (min(span[0], more[0]), max(span[1], more[1]))
