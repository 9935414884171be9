"""A long run: tandem_lines with 40 lines up to 1e6 steps, driven straight into RunState.

No sockets: frames are applied with ``RunState.apply`` as the server's ingest does (without
its log writes), so a million steps take about a minute. At each checkpoint it reports this
process's RSS (it holds the run state, as the server would), the cost of applying one
appended frame (decoded from bytes, as the server gets them), and the cost of one page
update at that size, as the server makes it in a Bokeh Document: ``page_data`` (every row
while the plot is short, a summary of every row once it is long, one row per line)
assigned to the source; alone and with the PATCH-DOC message a server would send to a browser.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import numpy as np
from bokeh.document import Document
from bokeh.protocol import Protocol

import _common
from streamvis import _protocol as protocol
from streamvis._page.figures import make_figure
from streamvis._page.shows import page_data
from streamvis._plots.envelope import DETAIL_ROWS
from streamvis._specs import PlotSpec
from streamvis._state import RunState

RUN, CID, PLOT, LINES = "long", "bench-client", "loss", 40
TIMED_FRAMES, CHUNKS, REFERENCE_ROWS = 500, 5, 1_000
OPTS = PlotSpec("tandem_lines", True, palette="Viridis256").to_wire()


def frame(step: int, ys: np.ndarray) -> protocol.Frame:
    """The frame a Client sends for ``tandem_lines(PLOT, step, ys)``."""
    return protocol.Frame(
        op="plot",
        run=RUN,
        cid=CID,
        seq=step + 1,
        name=PLOT,
        opts=OPTS,
        arrays=(np.array(step, dtype=np.int64), ys),
    )


def decoded(step: int, ys: np.ndarray) -> protocol.Frame:
    """The same frame after a round trip through bytes, as the server decodes it."""
    return protocol.decode(protocol.encode(frame(step, ys)))


def state_bytes(state: RunState) -> tuple[int, int]:
    """(bytes of rows held, bytes allocated) of the plot's columns."""
    data = state.plots[PLOT].data
    used = sum(column.nbytes for column in data.view().values())
    buffers = getattr(data, "_buffers", None)
    allocated = sum(b.nbytes for b in buffers.values()) if isinstance(buffers, dict) else used
    return used, allocated


def new_state(rows: int, pool: list[np.ndarray]) -> RunState:
    """A run whose plot holds ``rows`` rows."""
    state = RunState(RUN)
    state.apply(
        protocol.Frame(op="layout", run=RUN, cid=CID, seq=0, opts={"cells": {PLOT: [0, 0, 1, 1]}})
    )
    for s in range(rows):
        state.apply(frame(s, pool[s % len(pool)]))
    return state


def _timed(state: RunState, frames: list[protocol.Frame]) -> list[float]:
    clock = time.perf_counter_ns
    out = []
    for f in frames:
        t = clock()
        state.apply(f)
        out.append((clock() - t) / 1e3)
    return out


def time_apply(
    state: RunState, start: int, pool: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """µs per decoded frame applied to ``state`` and to a 1,000-row run, in alternating chunks."""
    chunk = TIMED_FRAMES // CHUNKS
    big: list[float] = []
    ref: list[float] = []
    for c in range(CHUNKS):
        reference = new_state(REFERENCE_ROWS, pool)
        first = start + c * chunk
        frames = [decoded(s, pool[s % len(pool)]) for s in range(first, first + chunk)]
        ref_frames = [
            decoded(s, pool[s % len(pool)]) for s in range(REFERENCE_ROWS, REFERENCE_ROWS + chunk)
        ]
        ref += _timed(reference, ref_frames)
        big += _timed(state, frames)
    return np.asarray(big), np.asarray(ref)


def page_update(state: RunState, repeats: int) -> dict[str, Any]:
    """Time one page update as the server makes it: ``page_data`` assigned to the source
    (every row while the plot is short, a summary once it is long)."""
    plot = state.plots[PLOT]
    doc = Document()
    fig, source = make_figure(PLOT, (0, 0, 1, 1), plot, page_data(plot))  # as a page starts
    assert source is not None
    doc.add_root(fig)
    events: list[Any] = []
    doc.on_change(events.append)
    protocol_ = Protocol()
    update_ms, message_ms, message_bytes = [], [], 0
    for i in range(repeats + 1):
        events.clear()
        t = time.perf_counter()
        source.data = page_data(plot)
        assigned = time.perf_counter()
        msg = protocol_.create("PATCH-DOC", events)
        size = len(msg.header_json) + len(msg.metadata_json) + len(msg.content_json)
        size += sum(len(b.to_bytes()) for b in msg.buffers)
        done = time.perf_counter()
        if i:  # the first one may also copy the views into arrays of the source's own
            update_ms.append((assigned - t) * 1e3)
            message_ms.append((done - t) * 1e3)
            message_bytes = size
    rss = _common.proc_status_mb()["VmRSS"]
    del doc, source, fig, events
    gc.collect()
    return {
        "update_ms": _common.percentile(update_ms, 50),
        "update_and_message_ms": _common.percentile(message_ms, 50),
        "message_bytes": message_bytes,
        "rss_with_page_mb": rss,
    }


def main() -> None:
    """Fill the run to each checkpoint, measuring there; print and save."""
    args = _common.parse_args(__doc__.splitlines()[0])
    checkpoints = (1_000, 10_000) if args.smoke else (1_000, 10_000, 100_000, 1_000_000)
    rng = np.random.default_rng(0)
    pool = [rng.standard_normal(LINES).astype(np.float32) for _ in range(64)]
    baseline = _common.proc_status_mb()["VmRSS"]
    state = new_state(0, pool)
    rows: list[dict[str, Any]] = []
    step = 0
    for checkpoint in checkpoints:
        fill = checkpoint - step
        clock = time.perf_counter_ns
        slowest = 0
        start = clock()
        for s in range(step, checkpoint):
            f = frame(s, pool[s % len(pool)])
            t = clock()
            state.apply(f)
            slowest = max(slowest, clock() - t)
        fill_seconds = (clock() - start) / 1e9
        step = checkpoint
        assert len(state.plots[PLOT].data) == checkpoint
        rss = _common.proc_status_mb()["VmRSS"]
        used, allocated = state_bytes(state)
        apply_us, ref_us = time_apply(state, step, pool)
        step += TIMED_FRAMES
        page = page_update(state, 8 if checkpoint >= 1_000_000 else 20)
        rows.append(
            {
                "points": checkpoint,
                "rss_mb": rss,
                "rss_over_baseline_mb": rss - baseline,
                "state_used_mb": used / 1e6,
                "state_allocated_mb": allocated / 1e6,
                "apply_median_us": _common.percentile(apply_us, 50),
                "apply_p99_us": _common.percentile(apply_us, 99),
                "reference_median_us": _common.percentile(ref_us, 50),
                "apply_vs_reference": _common.percentile(apply_us, 50)
                / _common.percentile(ref_us, 50),
                "fill_frames": fill,
                "fill_us_per_frame": fill_seconds * 1e6 / max(fill, 1),
                "fill_slowest_ms": slowest / 1e6,
                **page,
            }
        )
        r = rows[-1]
        print(
            f"  {checkpoint:>9,} points: apply {r['apply_median_us']:.1f} µs, "
            f"page update {r['update_ms']:.2f} ms, RSS {rss:.0f} MB",
            flush=True,
        )

    _common.report(
        "long run: tandem_lines, 40 lines (RunState.apply in-process; RSS of this process)",
        ("points", "RSS MB", "state MB", "alloc MB", "apply med µs", "p99 µs", "1e3 ref µs",
         "vs ref", "fill µs/frame", "slowest ms", "update ms", "+msg ms", "msg KB",
         "RSS+page MB"),
        [
            (
                r["points"],
                r["rss_mb"],
                r["state_used_mb"],
                r["state_allocated_mb"],
                r["apply_median_us"],
                r["apply_p99_us"],
                r["reference_median_us"],
                r["apply_vs_reference"],
                r["fill_us_per_frame"],
                r["fill_slowest_ms"],
                r["update_ms"],
                r["update_and_message_ms"],
                r["message_bytes"] / 1e3,
                r["rss_with_page_mb"],
            )
            for r in rows
        ],
    )  # fmt: skip
    print(
        "apply: RunState.apply of one decoded frame (median of 500 at that size, in chunks "
        "alternating with a run of 1,000 points: '1e3 ref', so that 'vs ref' is less sensitive to "
        "load from other processes); fill: mean over "
        "every frame applied since the last checkpoint (includes buffer growth); update: "
        "what a page gets per update: every row while the plot has at most "
        f"{DETAIL_ROWS:,} rows, a summary of every row past that, as one row per line; "
        "+msg: also building and serializing the PATCH-DOC message; RSS+page: with that "
        "page's source alive"
    )
    first, last = rows[0], rows[-1]
    targets = [
        _common.target(
            f"apply cost at {last['points']:,} vs 1,000 points",
            last["apply_vs_reference"],
            "<=",
            1.5,
            "x",
            f"{last['apply_median_us']:.1f} vs {last['reference_median_us']:.1f} µs "
            f"(at the 1,000 checkpoint: {first['apply_median_us']:.1f} µs)",
        ),
        _common.target(
            f"RSS at {last['points']:,} points, run state only",
            last["rss_mb"],
            "<",
            300,
            "MB",
            "this process, holding the state",
        ),
        _common.target(
            f"RSS at {last['points']:,} points, state + one page's source",
            last["rss_with_page_mb"],
            "<",
            300,
            "MB",
            "a server with one page open",
        ),
    ]
    _common.finish(
        args.out,
        "long_run",
        targets,
        smoke=args.smoke,
        baseline_rss_mb=baseline,
        rows=rows,
        notes=[
            "RunState.apply driven in-process (no sockets, no log writes); RSS is this "
            "process's, which holds the run state as a server would",
            "page update: a Document with one figure of 40 lines, updated as the server "
            "does: a one-row stream up to DETAIL_ROWS rows, a new summary past that; "
            "median of 20 (8 at 1e6)",
        ],
    )


if __name__ == "__main__":
    main()
