"""Random, truncated and mutated frames are decoded or refused precisely; the server stays up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect as ws_connect

from streamvis import Client, ProtocolError, StreamvisError
from streamvis._protocol import Frame, decode, encode
from streamvis._server import StreamvisServer
from streamvis._specs import ColorSpec, GridSpec, PlotSpec
from streamvis._state import RunState

SCATTER = PlotSpec("scatter", color=ColorSpec("Viridis256", 0), grid=GridSpec(1, 2))
TANDEM = PlotSpec("tandem_lines", append=True, palette="Viridis256")


def plot_frame(seq: int, spec: PlotSpec, *arrays: np.ndarray) -> bytes:
    """The bytes of a valid frame of plot 'p' of run 'r'."""
    opts = spec.to_wire()
    return encode(Frame(op="plot", run="r", cid="c", seq=seq, name="p", opts=opts, arrays=arrays))


VALID = [
    encode(Frame(op="layout", run="r", cid="c", seq=0, opts={"cells": {"p": [0, 0, 1, 1]}})),
    plot_frame(1, SCATTER, np.arange(24, dtype=np.float32).reshape(3, 4, 2)),
    plot_frame(2, TANDEM, np.array(1.0), np.arange(3.0)),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        if kind == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif kind == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        else:
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(max_size=16))
    return bytes(data)


def check(data: bytes) -> None:
    """A frame either decodes and applies, or is refused with a StreamvisError."""
    try:
        frame = decode(data)
    except ProtocolError:
        return
    state = RunState("r")
    state.apply(decode(VALID[0]))
    with contextlib.suppress(StreamvisError):
        state.apply(frame)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_frames(data: bytes) -> None:
    check(data)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=256))
def test_random_bytes(data: bytes) -> None:
    check(data)


def test_server_survives_garbage_and_serves_a_valid_client_after(
    server: StreamvisServer, connect: Callable[..., Client]
) -> None:
    rng = np.random.default_rng(0)
    garbage = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in (0, 1, 4, 9, 100, 5000)]
    garbage += [v[: len(v) // 2] for v in VALID] + [v[:8] + b"\xff" * 8 + v[16:] for v in VALID]

    async def spray() -> int:
        async with ws_connect(
            f"ws://127.0.0.1:{server.ingest_port}/ingest", compression=None
        ) as ws:
            for message in garbage:
                await ws.send(message)
            await ws.send(encode(Frame(op="sync", run="r", cid="fuzz", seq=0, ack=True)))
            replies = 0
            async for _ in ws:
                replies += 1
                if replies == len(garbage) + 1:
                    return replies
            return replies

    assert asyncio.run(asyncio.wait_for(spray(), 30)) == len(garbage) + 1
    client = connect()
    client.set_layout({"p": (0, 0, 1, 1)})
    client.scatter("p", np.zeros((5, 2)))
    assert client.flush(timeout=10)
    assert len(server.hub.runs["test"].plots["p"].data) == 5
