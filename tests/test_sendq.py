"""The client's send queue as plain calls: no thread, no socket, time passed in."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from streamvis._pool import BufferPool
from streamvis._protocol import UNPLACED, UNSTORED, decode
from streamvis._sendq import MAX_RESTORES, RETRY, Outgoing, SendQueue, Sent

LAYOUT = {"cells": {"a": [0, 0, 1, 1]}}


@pytest.fixture
def queue() -> SendQueue:
    return SendQueue("r", "c", BufferPool(2**20), replace_interval=0.1, max_bytes=10_000)


def plot(name: str = "a", n: int = 1, replace: bool = False, **opts: Any) -> Outgoing:
    return Outgoing("plot", name, opts, (np.full((n, 2), float(n)),), replace=replace)


def submit(queue: SendQueue, *items: Outgoing) -> None:
    for item in items:
        queue.keep_layout(item)
        if not queue.fold(item):
            queue.push(item)


def send(queue: SendQueue, now: float = 0.0) -> list[Sent]:
    batch, _ = queue.take(now)
    frames, errors = queue.encode(batch)
    queue.keep(frames, batch)
    assert not errors
    return frames


def sent(frames: list[Sent]) -> list[tuple[str, Any, bool]]:
    """(op, first value, restore) of each frame, as the server would decode it."""
    out: list[tuple[str, Any, bool]] = []
    for f in frames:
        frame = decode(f.data)
        out.append((frame.op, frame.arrays[0][0, 0] if frame.arrays else None, frame.restore))
    return out


def test_frames_are_numbered_kept_until_acknowledged_and_then_released(queue: SendQueue) -> None:
    done = threading.Event()
    submit(queue, Outgoing("layout", opts=LAYOUT), plot(n=1), Outgoing("sync", done=done))
    frames = send(queue)
    assert [f.seq for f in frames] == [0, 1, 2]
    assert decode(frames[-1].data).ack and not decode(frames[0].data).ack  # the last asks
    assert queue.resend() == frames  # what a new connection sends again
    answer = queue.answer({"ack": 1}, 0.0)
    assert answer.done == [] and queue.resend() == frames[2:]
    assert queue.answer({"ack": 2}, 0.0).done == [done]
    assert queue.empty and queue.buffered == 0


def test_a_queued_replace_is_folded_into_by_the_next_keeping_its_fig_kwargs(
    queue: SendQueue,
) -> None:
    submit(queue, plot(n=1, replace=True, fig={"title": "T"}), plot(n=2, replace=True))
    (only,) = queue.queued
    assert only.arrays[0].shape == (2, 2) and only.opts["fig"] == {"title": "T"}
    submit(queue, Outgoing("sync"), plot(n=3, replace=True))
    assert len(queue.queued) == 3  # nothing folds across a sync


def test_replaces_are_held_to_one_per_interval_and_go_before_the_next_call_of_their_plot(
    queue: SendQueue,
) -> None:
    submit(queue, plot(n=1, replace=True))
    assert sent(send(queue, now=0.0)) == [("plot", 1.0, False)]
    submit(queue, plot(n=2, replace=True))
    batch, due = queue.take(0.05)
    assert batch == [] and due == pytest.approx(0.05)  # held for the rest of the interval
    submit(queue, plot(n=3, replace=True))  # folds into the held one
    assert sent(send(queue, now=0.1)) == [("plot", 3.0, False)]
    submit(queue, plot(n=4, replace=True), plot(n=5))  # an append to it: the replace goes first
    assert sent(send(queue, now=0.12)) == [("plot", 4.0, False), ("plot", 5.0, False)]


def test_a_full_buffer_makes_calls_wait_until_acknowledgements_free_it(queue: SendQueue) -> None:
    big = plot(n=500)  # 8 KB of arrays
    submit(queue, big)
    assert queue.full(plot(n=200)) and not queue.full(Outgoing("sync"))
    frames = send(queue)
    assert queue.full(plot(n=200))  # sent is still held
    queue.answer({"ack": frames[-1].seq}, 0.0)
    assert not queue.full(plot(n=200))


def test_a_lost_place_resends_the_layout_then_everything_from_the_refused_frame(
    queue: SendQueue,
) -> None:
    submit(queue, Outgoing("layout", opts=LAYOUT), plot(n=1), plot(n=2), plot(n=3))
    frames = send(queue)
    queue.answer({"ack": 1}, 0.0)
    answer = queue.answer({"err": "no place", "seq": 2, "name": "a", "code": UNPLACED}, 0.0)
    assert answer.restored == 2 and answer.wake and answer.errors == []
    again = send(queue)
    assert [f.seq for f in again] == [4, 5, 6]  # renumbered, after all sent before
    assert sent(again) == [("layout", None, True), ("plot", 2.0, False), ("plot", 3.0, False)]
    stale = queue.answer({"err": "no place", "seq": 3, "code": UNPLACED}, 0.0)
    assert stale.restored == 0 and not stale.wake  # frame 3 went again already
    assert frames[2] not in queue.resend()


def test_a_frame_that_never_finds_a_place_is_dropped_and_what_follows_goes_on(
    queue: SendQueue,
) -> None:
    done = threading.Event()
    submit(queue, Outgoing("layout", opts=LAYOUT), plot(n=1), Outgoing("sync", done=done))
    send(queue)
    seq, now = 1, 0.0
    for _ in range(MAX_RESTORES):
        queue.answer({"err": "no place", "seq": seq, "code": UNPLACED}, now)
        now += RETRY[1]  # restores that recur wait longer and longer
        frames = send(queue, now)
        seq = frames[1].seq  # the plot frame, after the layout
    answer = queue.answer({"err": "no place", "seq": seq, "code": UNPLACED}, now)
    assert [str(e) for e, _ in answer.errors] == ["a frame was dropped: no place"]
    assert answer.done == [] and not done.is_set()  # the sync behind it goes on
    assert sent(send(queue, now + RETRY[1])) == [("layout", None, True), ("sync", None, False)]


def test_unstored_frames_wait_out_a_pause_that_grows_while_it_recurs(queue: SendQueue) -> None:
    submit(queue, plot(n=1))
    (frame,) = send(queue)
    answer = queue.answer({"err": "disk full", "seq": frame.seq, "code": UNSTORED}, 10.0)
    assert [w for _, w in answer.errors] == [UNSTORED]
    submit(queue, plot(n=2))  # nothing overtakes the frames waiting to go again
    batch, due = queue.take(10.5)
    assert batch == [] and due == pytest.approx(RETRY[0] - 0.5)
    again = send(queue, 10.0 + RETRY[0])
    assert sent(again) == [("sync", None, True), ("plot", 1.0, False), ("plot", 2.0, False)]
    queue.answer({"err": "disk full", "seq": again[1].seq, "code": UNSTORED}, 12.0)
    assert queue.take(12.0 + RETRY[0])[0] == []  # the second pause is longer
    assert queue.take(12.0 + 2 * RETRY[0])[0] != []


def test_restores_send_only_the_fig_kwargs_the_server_took(queue: SendQueue) -> None:
    submit(queue, Outgoing("layout", opts=LAYOUT), plot(n=1, fig={"title": "kept"}))
    submit(queue, plot(n=2, fig={"x_axis_lable": "typo"}))
    frames = send(queue)
    queue.answer({"err": "bad fig_kwargs", "seq": frames[2].seq, "name": "a"}, 0.0)
    queue.answer({"ack": frames[2].seq}, 0.0)
    submit(queue, plot(n=3))
    (frame,) = send(queue)
    queue.answer({"err": "no place", "seq": frame.seq, "code": UNPLACED}, 0.0)
    _layout, restored = send(queue)
    assert decode(restored.data).opts["fig"] == {"title": "kept"}


def test_a_refused_client_drops_what_it_holds_and_releases_every_waiter(
    queue: SendQueue,
) -> None:
    waiting, sent_done = threading.Event(), threading.Event()
    submit(queue, Outgoing("sync", done=sent_done))
    send(queue)
    submit(queue, plot(n=1), Outgoing("sync", done=waiting))
    assert set(queue.drop_all()) == {waiting, sent_done}
    assert queue.empty and queue.buffered == 0
    queue.keep_layout(Outgoing("layout", opts=LAYOUT))
    queue.relayout()  # once taken again, the layout goes first
    assert sent(send(queue)) == [("layout", None, False)]
