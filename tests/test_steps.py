"""Steps on every call: what a client says each frame's step is, and reading a run by step."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import pytest

from streamvis import ArgumentError, Client
from streamvis._runstore import RunStore
from streamvis._server import StreamvisServer, serve_in_thread
from test_durability import free_port


def paced(client: Client) -> None:
    """Wait until the server has what the client sent: a pace the link keeps up with."""
    assert client.flush(timeout=10)


def steps_of(server: StreamvisServer, plot: str) -> list[int | None]:
    store = server.hub.store
    assert store is not None
    return [s.step for s in store.open("steps").frames(plot)]


def paced_run(server: StreamvisServer, sent: list[tuple[float, int | None]]) -> RunStore:
    """Send a replace of value v at step s (None: none) for each (v, s) of ``sent``, each
    stored before the next is made; the run's store."""
    client = Client(f"127.0.0.1:{server.ingest_port}", "steps", exit_timeout=5)
    client.set_layout({"pts": (0, 0, 1, 1)})
    for value, step in sent:
        client.scatter("pts", np.full((2, 2), value), spatial_dim=1, step=step)
        paced(client)
    client.close()
    assert server.hub.store is not None
    return server.hub.store.open("steps")


def test_each_call_sends_its_step_and_time(stored: StreamvisServer) -> None:
    client = Client(f"127.0.0.1:{stored.ingest_port}", "steps", exit_timeout=5)
    client.set_layout({"loss": (0, 0, 1, 1), "pts": (0, 1, 1, 1)})
    before = time.time()
    client.tandem_lines("loss", 0, np.zeros(2))  # x is the step...
    client.tandem_lines("loss", 1.0, np.zeros(2))  # ...a float too, if whole
    client.tandem_lines("loss", 1.5, np.zeros(2))  # ...but not 1.5: no step
    client.tandem_lines("loss", 2, np.zeros(2), step=20)  # unless it is given
    client.scatter("pts", np.zeros((3, 2)), spatial_dim=1)  # no step set yet
    paced(client)
    client.set_step(np.int64(7))
    client.scatter("pts", np.zeros((3, 2)), spatial_dim=1)
    paced(client)
    client.scatter("pts", np.zeros((3, 2)), spatial_dim=1, step=3)  # back: kept as sent
    paced(client)
    client.set_step(None)
    client.scatter("pts", np.zeros((3, 2)), spatial_dim=1)
    paced(client)
    client.close()
    assert steps_of(stored, "loss") == [0, 1, None, 20]
    assert steps_of(stored, "pts") == [None, 7, 3, None]
    store = stored.hub.store
    assert store is not None
    sent = [s.sent for s in store.open("steps").frames("loss")]
    assert all(s is not None and before <= s <= time.time() for s in sent)


@pytest.mark.parametrize("step", ["7", True, 1.5, 2**70])
def test_a_step_that_is_not_an_int_is_refused_at_the_call(step: object) -> None:
    client = Client("127.0.0.1:9", "steps", exit_timeout=0)  # nothing listens: it never sends
    client.set_layout({"pts": (0, 0, 1, 1)})
    with pytest.raises(ArgumentError, match="step must be"):
        client.scatter("pts", np.zeros((3, 2)), spatial_dim=1, step=step)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="step must be"):
        client.set_step(step)  # type: ignore[arg-type]
    client.close(timeout=0)


def test_the_frame_at_a_step_is_the_latest_of_the_greatest_step_not_after_it(
    stored: StreamvisServer,
) -> None:
    sent = [*range(10), *range(5, 8)]  # resumed from a checkpoint at step 5
    run = paced_run(stored, [(float(n), step) for n, step in enumerate(sent)])

    def at(step: int) -> float | None:
        found = run.latest_at_step("pts", step)
        return None if found is None else float(found.frame.arrays[0][0, 0])

    assert at(6) == 11  # the resumed run's step 6, not the first one's
    assert at(9) == 9 and at(100) == 9  # the greatest step sent: before the rewind
    assert at(3) == 3 and at(-1) is None
    run_state = stored.hub.runs["steps"]
    assert (run_state.rewinds, run_state.rewound, run_state.steps) == (1, (9, 5), (0, 9))


def test_replaces_that_queue_up_fold_into_the_latest_and_the_run_counts_them(
    tmp_path: Path,
) -> None:
    port = free_port()
    serving = functools.partial(serve_in_thread, ingest_port=port, bokeh_port=0, data_dir=tmp_path)
    client = Client(f"127.0.0.1:{port}", "steps", exit_timeout=5)
    try:
        with serving():
            client.set_layout({"pts": (0, 0, 1, 1)})
            client.scatter("pts", np.zeros((2, 2)), spatial_dim=1, step=0)
            paced(client)  # kept: the link kept up
        for step in range(1, 40):  # the server is down: they queue up, and fold
            client.scatter("pts", np.full((2, 2), float(step)), spatial_dim=1, step=step)
        with serving() as again:
            paced(client)
            assert steps_of(again, "pts") == [0, 39]
            assert again.hub.runs["steps"].folded == 38  # each replace that did not go
    finally:
        client.close(timeout=1)


def test_an_append_plots_frames_record_its_rows_then_across_a_restart(tmp_path: Path) -> None:
    port = free_port()
    serving = functools.partial(serve_in_thread, ingest_port=port, bokeh_port=0, data_dir=tmp_path)
    client = Client(f"127.0.0.1:{port}", "steps", exit_timeout=5)
    try:
        with serving() as first:
            client.set_layout({"pts": (0, 0, 1, 1)})
            for _ in range(3):  # 24,000 rows: the first 16,384 are stored as a chunk
                client.scatter("pts", np.zeros((8000, 2)), spatial_dim=1, append=True)
            paced(client)
            assert first.hub.store is not None
            start = first.hub.runs["steps"].plots["pts"].start_id
            for _ in range(200):  # a restart reads the chunk, not the frames in it
                if first.hub.store.open("steps").stored_chunks("pts", start):
                    break
                time.sleep(0.05)
        with serving() as again:  # the rows go on from what the store held
            client.scatter("pts", np.zeros((2, 2)), spatial_dim=1, append=True)
            paced(client)
            store = again.hub.store
            assert store is not None
            rows = [s.rows for s in store.open("steps").frames("pts")]
            assert rows == [8000, 16000, 24000, 24002]
    finally:
        client.close(timeout=1)


def test_a_run_without_steps_is_read_by_the_time_its_frames_were_made(
    stored: StreamvisServer,
) -> None:
    run = paced_run(stored, [(float(value), None) for value in range(4)])  # each made after
    made = [s.sent or 0.0 for s in run.frames("pts")]
    assert all(made) and run.time_range() == (made[0], made[-1])
    for i, t in enumerate(made):
        found = run.latest_at_time("pts", t)  # at the time it was made: that frame...
        assert found is not None and found.frame.arrays[0][0, 0] == i
    assert run.latest_at_time("pts", made[0] - 1) is None  # ...and none before the first
    last = run.latest_at_time("pts", 2 * made[-1])
    assert last is not None and last.frame.arrays[0][0, 0] == 3
