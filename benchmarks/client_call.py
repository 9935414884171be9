"""Cost of one Client call (what the training loop pays) beside np.copy of the same array.

The client talks to a server in its own process (as a training job does) and flushes between
batches, so the buffer never fills and a call never waits: only the call is timed, one by one.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import _common
from streamvis import Client, GridSpec

RUN = "bench"
LAYOUT = {"loss": (0, 0, 1, 1), "pts": (0, 1, 1, 1), "mu": (0, 2, 1, 1)}


def time_calls(call: Callable[[int], object], count: int) -> np.ndarray:
    """Nanoseconds of each of ``count`` calls ``call(i)``, timed one by one."""
    out = np.empty(count, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(count):
        start = clock()
        call(i)
        out[i] = clock() - start
    return out


def _shifted(call: Callable[[int], None], offset: int, i: int) -> None:
    call(offset + i)


def _copy(array: np.ndarray, _i: int) -> np.ndarray:
    return np.copy(array)


def cases(client: Client) -> list[tuple[str, str, np.ndarray, Callable[[int], None], bool]]:
    """(short name, label, array, call, large) for each call measured."""
    rng = np.random.default_rng(0)
    ys = rng.standard_normal(40).astype(np.float32)
    pts = rng.standard_normal((40, 16, 2)).astype(np.float32)
    mu = rng.standard_normal((400, 40, 2, 2)).astype(np.float32)
    grid = GridSpec(dim=1, num_columns=8, padding_factor=1.2)
    return [
        (
            "tandem_lines",
            "tandem_lines, 40 float32",
            ys,
            lambda i: client.tandem_lines("loss", i, ys, "Viridis256"),
            False,
        ),
        (
            "scatter",
            "scatter (40, 16, 2) float32, replace",
            pts,
            lambda i: client.scatter("pts", pts, spatial_dim=2, append=False),
            False,
        ),
        (
            "multi_lines 256 KB",
            "multi_lines (400, 40, 2, 2) float32 = 256 KB, replace, grid",
            mu,
            lambda i: client.multi_lines(
                "mu", mu, line_dims=(0, 1), spatial_dim=2, append=False, grid=grid
            ),
            True,
        ),
    ]


def main() -> None:
    """Time every case in batches, flushing between them; print and save."""
    args = _common.parse_args(__doc__.splitlines()[0])
    batches = 3 if args.smoke else 40
    rows: list[dict[str, Any]] = []
    with _common.ServerProcess(RUN) as server:
        client = Client(f"127.0.0.1:{server.ingest_port}", RUN, exit_timeout=30)
        try:
            client.set_layout(LAYOUT)
            for short, label, array, call, large in cases(client):
                per_batch = 100 if large else 500
                call_ns: list[np.ndarray] = []
                copy_ns: list[np.ndarray] = []
                step = 0
                for batch in range(batches + 1):  # batch 0 warms up
                    calls = time_calls(functools.partial(_shifted, call, step), per_batch)
                    copies = time_calls(functools.partial(_copy, array), per_batch)
                    step += per_batch
                    if not client.flush(timeout=60):
                        raise RuntimeError("flush timed out")
                    if batch:
                        call_ns.append(calls)
                        copy_ns.append(copies)
                calls_us = np.concatenate(call_ns) / 1e3
                copies_us = np.concatenate(copy_ns) / 1e3
                row: dict[str, Any] = {
                    "call": label,
                    "name": short,
                    "bytes": array.nbytes,
                    "large": large,
                    "calls": int(calls_us.size),
                    "median_us": _common.percentile(calls_us, 50),
                    "p99_us": _common.percentile(calls_us, 99),
                    "copy_median_us": _common.percentile(copies_us, 50),
                    "copy_p99_us": _common.percentile(copies_us, 99),
                }
                row["ratio_to_copy"] = row["median_us"] / row["copy_median_us"]
                rows.append(row)
        finally:
            client.close(timeout=30)

    _common.report(
        "client call cost (µs, timed per call; server running, flushed between batches)",
        ("call", "bytes", "calls", "median", "p99", "np.copy median", "np.copy p99", "call/copy"),
        [
            (
                r["call"],
                r["bytes"],
                r["calls"],
                r["median_us"],
                r["p99_us"],
                r["copy_median_us"],
                r["copy_p99_us"],
                r["ratio_to_copy"],
            )
            for r in rows
        ],
    )
    tandem = rows[0]
    targets = [_common.target("tandem_lines call median", tandem["median_us"], "<=", 20.0, "µs")]
    for r in rows:
        if r["large"]:
            targets.append(
                _common.target(
                    f"{r['name']} call median vs np.copy",
                    r["ratio_to_copy"],
                    "<=",
                    2.0,
                    "x",
                    f"{r['median_us']:.1f} µs vs np.copy {r['copy_median_us']:.1f} µs",
                )
            )
        _common.finish(
            args.out,
            "client_call",
            targets,
            smoke=args.smoke,
            rows=rows,
            notes=[
                "each call timed alone with perf_counter_ns; np.copy of the same array timed "
                "the same way in the same batch",
                "scatter and multi_lines use append=False as in the swissroll example",
                "the server and the client's sender thread run in this process: a call can wait "
                "for the GIL while they work, which shows in p99",
            ],
        )


if __name__ == "__main__":
    main()
