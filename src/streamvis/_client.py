"""The Client a training loop calls: check the arguments, copy the arrays, enqueue, return.

Each plotting call raises at the caller's line if its arguments cannot make a plot, and
otherwise returns in microseconds: a background thread (``_transport``) encodes and sends.
What goes wrong far away (a refused frame, a full disk, a deleted run) never raises into the
training loop unless the client was made with ``on_error="raise"``.
"""

from __future__ import annotations

import atexit
import logging
import operator
import os
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgpack
import numpy as np
from numpy.typing import ArrayLike

from . import _transport
from ._errors import (
    ArgumentError,
    ClientClosed,
    FrameTooLarge,
    ServerError,
    ShapeError,
)
from ._inputs import MAX_STEP, as_array, check_step, ingest_uri, whole
from ._protocol import DEFAULT_LIMITS, RESTORES_HEADER, WIRE_DTYPES, check_name
from ._reports import ON_ERROR
from ._specs import (
    Cell,
    ColorSpec,
    GridSpec,
    PlotKind,
    PlotSpec,
    check_compatible,
    check_in_layout,
    check_labels,
    check_layout,
    data_shape,
    normalize,
    resolve_palette,
)
from ._transport import Outgoing, Transport

__all__ = ["Client"]

log = logging.getLogger("streamvis.client")

_WIRE_DTYPES = frozenset(WIRE_DTYPES.values())
_SHAPE, _NBYTES = operator.attrgetter("shape"), operator.attrgetter("nbytes")
_HEADER_ROOM = DEFAULT_LIMITS.max_header_bytes  # what a header may take beside the arrays


def _check_fig_kwargs(fig_kwargs: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if fig_kwargs is None:
        return None
    if not isinstance(fig_kwargs, Mapping) or not all(isinstance(k, str) for k in fig_kwargs):
        raise ArgumentError(f"fig_kwargs must be a dict with str keys, got {fig_kwargs!r}")
    try:
        packed = msgpack.packb(dict(fig_kwargs))
    except (TypeError, ValueError, OverflowError) as exc:
        raise ArgumentError(
            f"fig_kwargs {fig_kwargs!r} must hold plain values (str, numbers, lists, dicts): {exc}"
        ) from exc
    if len(packed) > DEFAULT_LIMITS.max_header_bytes // 2:
        raise ArgumentError(
            f"fig_kwargs take {len(packed)} bytes; keep them under "
            f"{DEFAULT_LIMITS.max_header_bytes // 2} (they travel in the frame's header)"
        )
    return dict(fig_kwargs)


# A call's arguments: kind, append, spatial_dim, line_dims, color, grid, palette. A plot's
# repeated call matches these without a new spec (a tuple: compared on every call).
# A call's options: kind, append, spatial_dim, line_dims, color, grid, palette, labels.
_Call = tuple[PlotKind, bool, Any, tuple[Any, ...], Any, Any, str | None, tuple[str, ...] | None]


@dataclass(frozen=True)
class _PlotCall:
    """A plot's last call as made, and as checked, so a repeat of it skips the checks."""

    call: _Call
    shapes: tuple[tuple[int, ...], ...]
    spec: PlotSpec
    shape: tuple[int, ...]
    opts: dict[str, Any]


class Client:
    """Sends arrays from a running program to a streamvis server, without blocking it.

    ``address`` is the ``host:port`` of the server's ingest endpoint (``--rest_port``;
    ``http://``, ``ws://`` and ``wss://`` addresses work too); ``run`` names the dashboard.
    Data survives the server being down: it is buffered (up to ``max_buffer_bytes``) and
    delivered once the server is reachable.

    What the server refuses later is logged once as a warning and kept in :attr:`errors`;
    ``on_error="raise"`` raises it from the next call instead (after that call's own data
    is queued). A run deleted or cleared on the server, or laid out anew by another client,
    gets this client's layout and figure settings again, and its plots go on.

    Every replace (``append=False``) is sent, so the run's history holds every step, up to
    one per ``replace_interval`` (5 ms) per plot and as long as the link and the server keep
    up; one made sooner, or still queued when the next replace of its plot comes, is folded
    into it (latest wins), and the frame that goes says how many it stands for. (A loop
    replacing a 256 KiB plot 1,000 times a second would otherwise spend a third of its own
    speed sending them all.) ``flush`` and any other call to the plot send a waiting replace.
    """

    def __init__(
        self,
        address: str,
        run: str,
        *,
        token: str | None = None,
        max_buffer_bytes: int = 512 * 2**20,
        max_frame_bytes: int = DEFAULT_LIMITS.max_frame_bytes,
        exit_timeout: float = 10.0,
        replace_interval: float = 0.005,
        on_error: Literal["warn", "raise"] = "warn",
    ) -> None:
        if on_error not in ON_ERROR:
            raise ArgumentError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        uri = ingest_uri(address)
        self.run = check_name(run, "run name")
        self.address = address
        self._strict = on_error == "raise"
        self._cells: dict[str, Cell] | None = None
        self._plots: dict[str, _PlotCall] = {}
        self._step: int | None = None  # the step of calls that name none (set_step)
        self._closed = False
        token = token if token is not None else os.environ.get("STREAMVIS_TOKEN")
        self._transport = Transport(
            uri,
            self.run,
            uuid.uuid4().hex,
            max_buffer_bytes=max_buffer_bytes,
            max_frame_bytes=max_frame_bytes,
            exit_timeout=exit_timeout,
            replace_interval=replace_interval,
            headers={
                RESTORES_HEADER: "1",
                **({"Authorization": f"Bearer {token}"} if token else {}),
            },
            strict=self._strict,
        )
        # A client dropped without close() still delivers what it queued, then stops.
        weakref.finalize(self, self._transport.retire)

    def __repr__(self) -> str:
        return f"Client({self.address!r}, {self.run!r})"

    @property
    def exit_timeout(self) -> float:
        """Seconds ``close()`` (and the interpreter's exit) waits for pending data."""
        return self._transport.exit_timeout

    @exit_timeout.setter
    def exit_timeout(self, seconds: float) -> None:
        self._transport.exit_timeout = float(seconds)

    @property
    def max_frame_bytes(self) -> int:
        """The largest frame this client sends (the server's limit, if lower, once known)."""
        return self._transport.frame_limit

    @property
    def errors(self) -> list[ServerError]:
        """Each distinct error the server reported so far, with its ``count`` of repeats."""
        return self._transport.reports.errors

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plotting calls ---------------------------------------------------------------------

    def set_layout(self, layout: Mapping[str, tuple[int, int, int, int]]) -> None:
        """Place plots in a grid: ``name -> (row, col, rowspan, colspan)``."""
        self._check_open()
        cells = check_layout(layout)
        self._cells = cells
        self._transport.submit(
            Outgoing("layout", opts={"cells": {k: list(v) for k, v in cells.items()}})
        )
        self._raise_remote()

    def scatter(
        self,
        name: str,
        data: ArrayLike,
        *,
        spatial_dim: int = -1,
        append: bool = False,
        color: ColorSpec | None = None,
        grid: GridSpec | None = None,
        fig_kwargs: Mapping[str, Any] | None = None,
        step: int | None = None,
    ) -> None:
        """Plot every index combination of the non-spatial axes as one (x, y) point.

        Axis ``spatial_dim`` must have size 2. ``append=True`` adds the points to the plot,
        ``append=False`` replaces them. ``step`` is the training step they belong to (by
        default the one :meth:`set_step` set, if any).
        """
        call: _Call = ("scatter", bool(append), spatial_dim, (), color, grid, None, None)
        self._plot(name, call, fig_kwargs, step, as_array(data, "data"))

    def multi_lines(
        self,
        name: str,
        data: ArrayLike,
        *,
        line_dims: tuple[int, ...] | list[int] | int,
        spatial_dim: int = -1,
        append: bool = False,
        color: ColorSpec | None = None,
        grid: GridSpec | None = None,
        fig_kwargs: Mapping[str, Any] | None = None,
        step: int | None = None,
    ) -> None:
        """Plot one line per index combination of ``line_dims``; the other axes are its points.

        ``append=True`` extends every line with the new points; ``append=False`` replaces.
        ``step`` is as for :meth:`scatter`.
        """
        if isinstance(line_dims, np.ndarray):
            line_dims = line_dims.tolist()
        if isinstance(line_dims, (tuple, list)):
            dims: tuple[Any, ...] = tuple(line_dims)
        elif hasattr(line_dims, "__index__"):
            dims = (line_dims,)
        else:
            raise ArgumentError(f"line_dims must be an int or a tuple of ints, got {line_dims!r}")
        call: _Call = ("multi_lines", bool(append), spatial_dim, dims, color, grid, None, None)
        self._plot(name, call, fig_kwargs, step, as_array(data, "data"))

    def tandem_lines(
        self,
        name: str,
        x: ArrayLike,
        ys: ArrayLike,
        palette: str = "Viridis256",
        *,
        fig_kwargs: Mapping[str, Any] | None = None,
        step: int | None = None,
        labels: Sequence[str] | None = None,
    ) -> None:
        """Add the point (x, ys[k]) to line k, for each of the K values in ``ys``. The
        point's step is ``step`` if given, else ``x`` if it is a whole number (x is most
        often the step), else the one :meth:`set_step` set. ``labels`` names the lines in
        the plot's legend (one each; a click on a name hides its line)."""
        if not isinstance(palette, str):
            raise ArgumentError(
                f"palette must be a palette name like 'Viridis256', got {palette!r}"
            )
        resolve_palette(palette)
        names = None if labels is None else check_labels(labels)
        call: _Call = ("tandem_lines", True, -1, (), None, None, palette, names)
        ys_array = as_array(ys, "ys")
        ys_array = ys_array.reshape(1) if ys_array.ndim == 0 else ys_array
        x_array = as_array(x, "x")
        if step is None and x_array.size == 1:
            step = whole(x_array)
        self._plot(name, call, fig_kwargs, step, x_array, ys_array)

    def set_step(self, step: int | None) -> None:
        """Set the step of the calls from now on that name none (None: no step). A page
        moves through a run by its steps; steps may go back (a run resumed from a
        checkpoint), and every one is kept."""
        self._step = None if step is None else check_step(step)

    def clear(self) -> None:
        """Delete the run's layout and data on the server; plots must be laid out again."""
        self._check_open()
        self._cells, self._plots = None, {}
        self._transport.submit(Outgoing("clear"))
        self._raise_remote()

    def _plot(
        self,
        name: str,
        call: _Call,
        fig_kwargs: Mapping[str, Any] | None,
        step: int | None,
        *arrays: np.ndarray,
    ) -> None:
        self._check_open()
        if step is None:
            step = self._step
        elif type(step) is not int or not -MAX_STEP <= step <= MAX_STEP:
            step = check_step(step)
        check_in_layout(name, self._cells)
        shapes = tuple(map(_SHAPE, arrays))
        nbytes = sum(map(_NBYTES, arrays))
        limit = self._transport.frame_limit
        if nbytes > limit - _HEADER_ROOM:
            raise FrameTooLarge(
                f"plot {name!r}: {nbytes} bytes of arrays exceed the frame limit of {limit} "
                "bytes; send a smaller array (or raise Client(max_frame_bytes=...) and the "
                "server's --max_frame_mb)"
            )
        previous = self._plots.get(name)
        if previous and previous.call == call and previous.shapes == shapes and fig_kwargs is None:
            opts = previous.opts  # the same call as last time: checked already
        else:
            opts = self._check_call(name, call, _check_fig_kwargs(fig_kwargs), arrays, shapes)
        copies, buffer = self._transport.pool.copy(arrays, nbytes)
        self._transport.submit(
            Outgoing(
                "plot",
                name,
                opts,
                copies,
                replace=not call[1],
                buffer=buffer,
                nbytes=nbytes + _transport.ITEM_OVERHEAD,
                made=time.time(),  # each frame says when it was made, and its step if it has
                step=step,  # one: a page moves through the run by them
            )
        )
        if self._strict and self._transport.reports.pending:
            self._raise_remote()

    def _check_call(
        self,
        name: str,
        call: _Call,
        fig: dict[str, Any] | None,
        arrays: tuple[np.ndarray, ...],
        shapes: tuple[tuple[int, ...], ...],
    ) -> dict[str, Any]:
        """Check a call that differs from the plot's last one; return its wire options."""
        if any(len(shape) > DEFAULT_LIMITS.max_ndim for shape in shapes):  # as the decoder
            raise ShapeError(
                f"plot {name!r}: arrays of shapes {shapes} have more than "
                f"{DEFAULT_LIMITS.max_ndim} axes; reshape them first"
            )
        kind, append, spatial_dim, line_dims, color, grid, palette, labels = call
        spec = PlotSpec(
            kind, append, spatial_dim, line_dims, color, grid, palette, fig, labels
        )  # fmt: skip
        checked = normalize(spec, shapes)
        shape = data_shape(checked, arrays)
        previous = self._plots.get(name)
        if previous is not None:
            check_compatible(name, previous.spec, previous.shape, checked, shape)
        opts = checked.to_wire()
        opts.pop("fig", None)  # sent with the calls that give them; the server keeps them
        self._plots[name] = _PlotCall(call, shapes, checked, shape, opts)
        return opts if fig is None else {**opts, "fig": dict(fig)}

    # -- delivery ---------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the server has applied everything sent so far.

        Returns False if ``timeout`` seconds passed first, or at once while the server refuses
        this client (see :attr:`errors`). With ``on_error="raise"``, raises ServerError if the
        server refused anything since the last check.
        """
        self._check_open()
        delivered = self._transport.sync(timeout)
        self._raise_remote()
        return delivered

    @property
    def connected(self) -> bool:
        """Whether the websocket to the server is open right now."""
        return self._transport.connected.is_set()

    def close(self, timeout: float | None = None) -> bool:
        """Deliver pending data (waiting at most ``timeout``, default ``exit_timeout``) and stop."""
        if self._closed:
            return True
        self._closed = True
        return self._transport.close(self.exit_timeout if timeout is None else timeout)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed(f"{self!r} is closed: create a new Client to send more data")

    def _raise_remote(self) -> None:
        """In strict mode, raise what the server refused since the last call."""
        if not self._strict:
            return
        errors = self._transport.reports.pop()
        if errors:
            first, more = errors[0], len(errors) - 1
            suffix = f" (and {more} more errors, see client.errors)" if more else ""
            raise ServerError(f"{first}{suffix}", seq=first.seq, plot=first.plot)


@atexit.register
def _close_all() -> None:
    """Deliver what every client still holds when the interpreter exits (closed or not)."""
    for transport in list(_transport.live):
        try:
            transport.close(transport.exit_timeout)
        except Exception:  # never let one client's failure stop the others' delivery
            log.exception("closing the sender to %s at exit failed", transport.uri)
