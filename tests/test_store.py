"""The run store: every accepted frame kept, read back as what pages show, damage kept local."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sqlite3
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streamvis import _chunking as chunking_module
from streamvis import _plotstate as plotstate_module
from streamvis._chunks import Chunks
from streamvis._errors import StreamvisError, UnknownPlot
from streamvis._history import Stored
from streamvis._hub import Hub
from streamvis._page.shows import page_data
from streamvis._page.views import image_drawer
from streamvis._plots import envelope, growing
from streamvis._plots.raster import auto_view
from streamvis._protocol import Frame, encode
from streamvis._runstore import RunStore
from streamvis._specs import PlotSpec
from streamvis._store import Store

LAYOUT = {"cells": {"loss": [0, 0, 1, 1], "pts": [0, 1, 1, 1]}}


class Sender:
    """A client's frames, admitted, stored and applied as the server does it."""

    def __init__(self, hub: Hub, cid: str = "c", run: str = "r") -> None:
        self.hub, self.cid, self.run, self.seq = hub, cid, run, 0

    def send(self, op: str, name: str | None = None, *arrays: np.ndarray, **opts: object) -> None:
        frame = Frame(
            op=op,  # type: ignore[arg-type]
            run=self.run,
            cid=self.cid,
            seq=self.seq,
            name=name,
            opts=opts,
            arrays=arrays,
        )
        self.seq += 1
        admitted = self.hub.state(self.run).admit(frame)
        assert admitted is not None
        errors: list[StreamvisError | None] = []
        self.hub.store_and_apply(self.run, [(admitted, memoryview(encode(frame)))], errors.append)
        assert errors == [None]

    def tandem(self, step: int) -> None:
        spec = PlotSpec("tandem_lines", append=True, palette="Viridis256").to_wire()
        self.send("plot", "loss", np.array(step), np.arange(3.0) + step, **spec)

    def scatter(self, n: int, **fig: object) -> None:
        spec = PlotSpec("scatter", fig_kwargs=fig or None).to_wire()
        self.send("plot", "pts", np.full((n, 2), float(n)), **spec)


@pytest.fixture
def sender(tmp_path: Path) -> Sender:
    """A client's frames into a persistent hub in ``tmp_path``, layout already sent."""
    sender = Sender(Hub(Store(tmp_path)))
    sender.send("layout", cells=LAYOUT["cells"])
    return sender


def reopened(directory: Path) -> Hub:
    """A new server's hub on the same folder, loaded."""
    hub = Hub(Store(directory))
    hub.load()
    return hub


def test_a_restarted_hub_shows_what_was_stored(tmp_path: Path, sender: Sender) -> None:
    for step in range(100):
        sender.tandem(step)
    sender.scatter(1, title="T")
    for n in range(2, 30):
        sender.scatter(n)
    sender.hub.close()
    again = reopened(tmp_path)
    run = again.runs["r"]
    assert run.plots["loss"].data.view()["x"].tolist() == list(range(100))
    assert run.plots["pts"].data.view()["x"].tolist() == [29.0] * 29
    assert run.plots["pts"].fig_kwargs == {"title": "T"}  # sent once, with the first replace
    assert run.last_seq == {"c": sender.seq - 1}  # what the client resends is a duplicate
    again.close()


def test_rows_in_an_x_range_come_at_full_resolution_from_memory_and_the_store(
    tmp_path: Path, sender: Sender
) -> None:
    for step in range(20_000):  # past a piece of 16,384 rows: stored, it leaves memory
        sender.tandem(step)
    spec = PlotSpec("scatter", append=True).to_wire()
    for n in range(3):  # a frame of 20,000 rows is a piece of its own
        sender.send("plot", "pts", np.stack([np.arange(20_000.0) + 1e5 * n] * 2, 1), **spec)
    sender.hub.close()
    again = reopened(tmp_path)
    assert not again.runs["r"].plots["loss"].data.held(0, 16_384)  # read back from the store
    loss = asyncio.run(again.rows("r", "loss", 16_500.5, 15_000))  # either order
    assert loss["x"].tolist() == list(range(15_000, 16_501))
    assert loss["y2"].tolist() == [x + 2 for x in range(15_000, 16_501)]
    pts = asyncio.run(again.rows("r", "pts", 119_990, 200_005))
    assert pts["x"].tolist() == [*range(119_990, 120_000), *range(200_000, 200_006)]
    with pytest.raises(UnknownPlot, match="'loss', 'pts'"):
        asyncio.run(again.rows("r", "los", 0, 1))
    again.close()


def test_every_replace_is_kept_and_only_the_latest_is_read_at_start(
    tmp_path: Path, sender: Sender
) -> None:
    for n in range(1, 51):
        sender.scatter(n)
    stored = sender.hub.store.open("r")  # type: ignore[union-attr]
    history = list(stored.frames("pts"))
    assert [len(s.frame.arrays[0]) for s in history] == list(range(1, 51))
    assert all(a.time <= b.time for a, b in itertools.pairwise(history))
    current = [s.frame for s in stored.current() if isinstance(s, Stored) and s.frame.op == "plot"]
    assert [len(f.arrays[0]) for f in current] == [50]
    middle = history[24]
    at = stored.latest_at("pts", middle.id)
    assert at is not None and len(at.frame.arrays[0]) == 25
    sender.hub.close()


def test_clear_and_delete_remove_the_data(tmp_path: Path, sender: Sender) -> None:
    sender.tandem(0)
    sender.send("clear")
    sender.hub.close()
    assert reopened(tmp_path).runs["r"].plots == {}
    hub = reopened(tmp_path)
    assert asyncio.run(hub.delete("r")) and not list((tmp_path / "runs").iterdir())
    assert not asyncio.run(hub.delete("r"))
    hub.close()


def test_foreign_files_in_the_data_folder_are_left_alone(tmp_path: Path) -> None:
    foreign = {"train.log": os.urandom(2_000_000), "notes.txt": b"mine", "x.sqlite": b"not ours"}
    for name, data in foreign.items():
        (tmp_path / name).write_bytes(data)
    before = {name: (tmp_path / name).stat().st_mtime_ns for name in foreign}
    sender = Sender(Hub(Store(tmp_path)))
    sender.send("layout", cells=LAYOUT["cells"])
    sender.hub.close()
    reopened(tmp_path).close()
    for name, data in foreign.items():
        assert (tmp_path / name).read_bytes() == data
        assert (tmp_path / name).stat().st_mtime_ns == before[name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*foreign, "runs"])


def test_a_streamvis_01_log_is_migrated_and_kept(tmp_path: Path) -> None:
    log = bytearray()
    layout = Frame(op="layout", run="old", cid="c", seq=0, opts=LAYOUT)
    spec = PlotSpec("scatter").to_wire()
    points = Frame("plot", "old", "c", 1, "pts", spec, (np.ones((4, 2)),))
    for frame in (layout, points):
        data = encode(frame)
        log += struct.pack(">II", len(data), zlib.crc32(data)) + data
    (tmp_path / "old.log").write_bytes(bytes(log))
    hub = reopened(tmp_path)
    assert len(hub.runs["old"].plots["pts"].data) == 4
    assert hub.runs["old"].last_seq == {"c": 1}
    assert (tmp_path / "old.log.migrated").read_bytes() == log  # the original, unchanged
    hub.close()


def test_damage_in_the_middle_of_a_run_costs_only_what_it_touched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sender = Sender(Hub(Store(tmp_path)))
    sender.send("layout", cells=LAYOUT["cells"])
    other = Sender(sender.hub, run="other")
    other.send("layout", cells=LAYOUT["cells"])
    other.tandem(7)
    for step in range(1000):  # ~190 B a frame: a 4 KiB page holds ~20 of them
        sender.tandem(step)
    sender.hub.close()
    path = tmp_path / "runs" / "r.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    with open(path, "r+b") as file:  # zero four pages, three quarters in
        file.seek(size * 3 // 4 // 4096 * 4096)
        file.write(b"\0" * 4 * 4096)
    with caplog.at_level(logging.ERROR, logger="streamvis.store"):
        hub = reopened(tmp_path)
    damaged = [r for r in caplog.records if "damaged" in r.getMessage()]
    assert len(damaged) == 1 and "r.sqlite.damaged-" in damaged[0].getMessage()
    xs = hub.runs["r"].plots["loss"].data.view()["x"].tolist()
    assert 600 <= len(xs) <= 1000 and xs == sorted(xs) and xs[-1] == 999  # the rest survives
    assert hub.runs["other"].plots["loss"].data.view()["x"].tolist() == [7]
    kept = [p for p in (tmp_path / "runs").iterdir() if ".damaged-" in p.name]
    assert kept and any(p.stat().st_size == size for p in kept)  # the original, as it was
    hub.close()


def test_history_past_the_budget_is_thinned_from_the_largest_plot_evenly(tmp_path: Path) -> None:
    sender = Sender(Hub(Store(tmp_path, budget=3 * 2**20)))
    sender.send("layout", cells={"big": [0, 0, 1, 1], "small": [0, 1, 1, 1]})
    spec = PlotSpec("scatter").to_wire()
    for n in range(100):  # 64 KiB replaces beside 160 B ones: 6.4 MB of history
        sender.send("plot", "big", np.full((4096, 2), float(n)), **spec)
        sender.send("plot", "small", np.full((10, 2), float(n)), **spec)
    stored = sender.hub.store.open("r")  # type: ignore[union-attr]
    big = [s.frame.arrays[0][0, 0] for s in stored.frames("big")]
    small = [s.frame.arrays[0][0, 0] for s in stored.frames("small")]
    assert small == list(range(100))  # never thinned to save the big one's bytes
    assert big[0] == 0 and big[-1] == 99 and 10 < len(big) < 60  # first, latest, and a spread
    gaps = np.diff(big)
    assert gaps.max() <= 2.5 * np.median(gaps)  # evenly, over the whole history
    assert stored.used() < 4 * 2**20
    assert disk_taken(tmp_path / "runs" / "r.sqlite-segments") < 4 * 2**20  # freed on disk too
    sender.hub.close()
    assert reopened(tmp_path).runs["r"].plots["big"].data.view()["x"][0] == 99


def disk_taken(directory: Path) -> int:
    """The bytes of every file under ``directory``."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def test_large_frames_are_written_once_into_segment_files(tmp_path: Path, sender: Sender) -> None:
    sender.send("layout", cells={"big": [0, 0, 1, 1]})
    spec = PlotSpec("scatter").to_wire()
    for n in range(40):  # 256 KiB replaces: 10 MiB
        sender.send("plot", "big", np.full((16_384, 2), float(n)), **spec)
    sender.hub.close()
    runs = tmp_path / "runs"
    database = sum(p.stat().st_size for p in runs.glob("r.sqlite*") if p.is_file())
    assert database < 2**20 < 10 * 2**20 < disk_taken(runs / "r.sqlite-segments")
    again = reopened(tmp_path)
    stored = again.store.open("r")  # type: ignore[union-attr]
    assert [s.frame.arrays[0][-1, 1] for s in stored.frames("big")] == list(range(40))
    assert again.runs["r"].plots["big"].data.view()["x"][0] == 39
    again.close()


def test_damage_in_a_segment_file_costs_only_the_frames_it_touched(
    tmp_path: Path, sender: Sender, caplog: pytest.LogCaptureFixture
) -> None:
    sender.send("layout", cells={"big": [0, 0, 1, 1]})
    spec = PlotSpec("scatter").to_wire()
    for n in range(10):  # 128 KiB each, one after another in one file
        sender.send("plot", "big", np.full((8192, 2), float(n)), **spec)
    sender.hub.close()
    (segment,) = (tmp_path / "runs" / "r.sqlite-segments").iterdir()
    size = segment.stat().st_size
    with open(segment, "r+b") as file:  # zero 4 KiB in the middle of the fifth frame
        file.seek(size * 9 // 20)
        file.write(bytes(4096))
    again = reopened(tmp_path)
    stored = again.store.open("r")  # type: ignore[union-attr]
    with caplog.at_level(logging.ERROR):
        values = [s.frame.arrays[0][0, 0] for s in stored.frames("big")]
    assert values == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    (report,) = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert "1 stored frames" in report
    assert segment.stat().st_size == size  # left as it was
    again.close()


def test_a_layout_sent_again_keeps_the_rows_before_it_after_a_restart(
    tmp_path: Path, sender: Sender
) -> None:
    for step in range(50):
        sender.tandem(step)
    sender.send("layout", cells=LAYOUT["cells"])  # a restarted script, say
    for step in range(50, 60):
        sender.tandem(step)
    sender.hub.close()
    again = reopened(tmp_path)
    assert again.runs["r"].plots["loss"].data.view()["x"].tolist() == list(range(60))
    again.close()


def test_frames_stay_stored_once_when_thinning_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(store: RunStore) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(RunStore, "thin", full)
    sender = Sender(Hub(Store(tmp_path, budget=2**16)))  # thinning is due at once
    sender.send("layout", cells=LAYOUT["cells"])
    for step in range(20):
        sender.tandem(step)  # Sender asserts that every write succeeded
    sender.hub.close()
    again = reopened(tmp_path)
    assert again.runs["r"].plots["loss"].data.view()["x"].tolist() == list(range(20))
    again.close()


def test_plots_the_last_layout_dropped_are_not_read_at_start(
    tmp_path: Path, sender: Sender, caplog: pytest.LogCaptureFixture
) -> None:
    for step in range(100):
        sender.tandem(step)
    sender.send("layout", cells={"pts": [0, 0, 1, 1]})  # loss has no place any more
    sender.scatter(3)
    sender.hub.close()
    with caplog.at_level(logging.WARNING):
        again = reopened(tmp_path)
    assert set(again.runs["r"].plots) == {"pts"}
    assert not [r for r in caplog.records if "skipped stored frame" in r.getMessage()]
    again.close()


def test_a_run_unreadable_at_start_is_read_when_its_client_sends(
    tmp_path: Path, sender: Sender, monkeypatch: pytest.MonkeyPatch
) -> None:
    for step in range(5):
        sender.tandem(step)
    sender.hub.close()
    locked = [True]

    def current(store: RunStore, chunks: bool = True) -> Iterator[Stored | Chunks]:
        if locked[0]:
            raise sqlite3.OperationalError("database is locked")  # a backup holds it, say
        yield from real_current(store, chunks)

    real_current = RunStore.current
    monkeypatch.setattr(RunStore, "current", current)
    hub = reopened(tmp_path)
    assert "r" not in hub.runs
    locked[0] = False
    state = hub.state("r")  # its client's next frame: the run is read now, not started anew
    assert state.plots["loss"].data.view()["x"].tolist() == list(range(5))
    assert state.is_duplicate(Frame("sync", "r", "c", sender.seq - 1))  # resends are known
    hub.close()


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Seal rows into chunks of 64 (instead of thousands), so that a test's runs have many."""
    monkeypatch.setattr(growing, "CHUNK_ROWS", 64)
    return 64


def no_persist_twin(sender: Sender) -> Sender:
    """A hub without a store that gets the same frames: what a plot holds when all is in RAM."""
    twin = Sender(Hub())
    twin.send("layout", cells=LAYOUT["cells"])
    return twin


def test_a_long_plot_leaves_memory_once_stored_and_restarts_from_its_chunks(
    tmp_path: Path, sender: Sender, small_chunks: int
) -> None:
    twin = no_persist_twin(sender)
    for step in range(1000):
        sender.tandem(step)
        twin.tandem(step)
    live = sender.hub.runs["r"].plots["loss"]
    assert live.data.spilled >= 1000 - 2 * small_chunks  # all but the rows not yet sealed
    sender.hub.close()

    items = list(Store(tmp_path).open("r").current())
    frames = [item for item in items if isinstance(item, Stored)]
    assert len(frames) < 2 * small_chunks  # the layout, the first frame, those after the chunks
    again = reopened(tmp_path)
    plot, whole = again.runs["r"].plots["loss"], twin.hub.runs["r"].plots["loss"]
    assert plot.data.spilled >= 1000 - 2 * small_chunks
    for rows in (None, (100, 300)):  # the whole summary, and a window of it in detail
        for k, v in whole.summary(rows).items():
            np.testing.assert_array_equal(plot.summary(rows)[k], v, err_msg=k)
    sender = Sender(again)
    sender.seq = 10_000
    sender.tandem(1000)
    assert again.runs["r"].plots["loss"].data.view()["x"].tolist() == list(range(1001))
    again.close()


def test_appended_lines_join_on_across_a_restart_from_chunks(
    tmp_path: Path, sender: Sender, small_chunks: int
) -> None:
    twin = no_persist_twin(sender)
    spec = PlotSpec("multi_lines", append=True, line_dims=(0,), spatial_dim=2).to_wire()
    walk = np.cumsum(np.random.default_rng(0).normal(size=(60, 3, 50, 2)), axis=2)

    def send(to: Sender, i: int) -> None:
        to.send("plot", "pts", walk[i].astype(np.float32), **spec)

    for i in range(30):
        send(sender, i)
        send(twin, i)
    sender.hub.close()
    again = Sender(reopened(tmp_path))
    again.seq = sender.seq
    for i in range(30, 60):
        send(again, i)
        send(twin, i)
    plot, whole = again.hub.runs["r"].plots["pts"], twin.hub.runs["r"].plots["pts"]
    assert plot.data.spilled > 0
    for k, v in whole.data.view().items():
        np.testing.assert_array_equal(plot.data.view()[k], v, err_msg=k)
    assert plot.bounds == whole.bounds
    view = auto_view(whole.bounds, (200, 150))
    np.testing.assert_array_equal(  # an image drawn from chunks read back is the same
        image_drawer(plot, view)()["image"][0], image_drawer(whole, view)()["image"][0]
    )
    again.hub.close()


def test_a_damaged_chunk_costs_nothing_the_frames_hold(
    tmp_path: Path, sender: Sender, small_chunks: int, caplog: pytest.LogCaptureFixture
) -> None:
    for step in range(500):
        sender.tandem(step)
    sender.hub.close()
    with sqlite3.connect(tmp_path / "runs" / "r.sqlite") as db:
        db.execute("UPDATE chunks SET data = x'00' WHERE first_row = 128")
    again = reopened(tmp_path)
    assert again.runs["r"].plots["loss"].data.view()["x"].tolist() == list(range(500))
    assert "cannot read rows 128+ of plot 'loss'" in caplog.text
    again.close()


def test_an_image_is_drawn_on_from_the_last_one_and_kept_for_a_restart(
    tmp_path: Path, sender: Sender
) -> None:
    spec = PlotSpec("multi_lines", append=True, line_dims=(0,), spatial_dim=2).to_wire()
    steps = np.random.default_rng(0).normal(scale=0.02, size=(8, 3, 2000, 2))
    walk = np.clip(np.cumsum(steps.reshape(24, 2000, 2), axis=1), -1, 1).reshape(8, 3, 2000, 2)
    walk[0, 0, :2] = [[-1, -1], [1, 1]]  # the same bounds throughout
    for i in range(4):
        sender.send("plot", "pts", walk[i].astype(np.float32), **spec)
    plot = sender.hub.runs["r"].plots["pts"]
    assert plot.rasterized
    view = auto_view(plot.bounds, (300, 200))
    image, half = image_drawer(plot, view)()["image"][0], len(plot.data)
    for i in range(4, 8):
        sender.send("plot", "pts", walk[i].astype(np.float32), **spec)
    plot.last_image = None
    whole = image_drawer(plot, view)()["image"][0]
    plot.last_image = (half, view, image)  # drawn of the first half: the rest drawn over it
    np.testing.assert_array_equal(image_drawer(plot, view)()["image"][0], whole)
    solid = np.full_like(whole, 7)
    plot.last_image = (len(plot.data), view, solid)  # no row since: nothing is drawn again
    np.testing.assert_array_equal(image_drawer(plot, view)()["image"][0], solid)

    plot.last_image = (len(plot.data), view, whole)
    sender.hub.keep_image("r", "pts")
    sender.hub.close()
    again = reopened(tmp_path)
    kept = again.runs["r"].plots["pts"].last_image
    assert kept is not None and kept[:2] == (len(plot.data), view)
    np.testing.assert_array_equal(kept[2], whole)
    shown = page_data(again.runs["r"].plots["pts"])  # what a page opened now gets at once
    np.testing.assert_array_equal(shown["image"][0], whole)
    again.close()


def test_a_long_line_plot_restarts_from_its_stored_summaries_alone(
    tmp_path: Path, sender: Sender, small_chunks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(envelope, "BUCKETS", 4)  # envelopes of 4 to 8 buckets...
    for module in (chunking_module, plotstate_module):  # ...from stored buckets of 16 rows
        monkeypatch.setattr(module, "SUMMARY_ROWS", 16)
    monkeypatch.setattr(plotstate_module, "BUCKETS", 4)
    ys = np.random.default_rng(0).normal(size=(1000, 3))
    spec = PlotSpec("tandem_lines", append=True, palette="Viridis256").to_wire()
    for step in range(1000):
        sender.send("plot", "loss", np.array(step), ys[step], **spec)
    sender.hub.close()

    def unread(*args: object) -> None:
        raise AssertionError("a restart read a chunk's rows")

    monkeypatch.setattr(RunStore, "read_chunk", unread)
    again = reopened(tmp_path)
    summary = again.runs["r"].plots["loss"].summary()
    assert len(summary["x"]) <= 2 * 8 + 2 * small_chunks  # the buckets, and the rows after
    assert (summary["x"][0], summary["x"][-1]) == (0, 999)
    for k in range(3):  # every line keeps its extremes
        assert (summary[f"y{k}"].min(), summary[f"y{k}"].max()) == (ys[:, k].min(), ys[:, k].max())
    again.close()


def test_small_appends_leave_memory_as_their_frames_and_come_back_the_same(
    tmp_path: Path, sender: Sender, small_chunks: int
) -> None:
    twin = no_persist_twin(sender)
    spec = PlotSpec("scatter", append=True).to_wire()
    points = np.random.default_rng(0).normal(size=(100, 10, 2)).astype(np.float32)
    for i in range(100):  # 10 points a call: a piece holds the rows of 7 calls
        sender.send("plot", "pts", points[i], **spec)
        twin.send("plot", "pts", points[i], **spec)
    plot, whole = sender.hub.runs["r"].plots["pts"], twin.hub.runs["r"].plots["pts"]
    assert plot.data.spilled >= 1000 - 2 * small_chunks
    for k, v in whole.data.view().items():  # read back from the frames that made them
        np.testing.assert_array_equal(plot.data.view()[k], v, err_msg=k)
    sender.hub.close()
    with sqlite3.connect(tmp_path / "runs" / "r.sqlite") as db:
        (stored,) = db.execute("SELECT count(*) FROM chunks WHERE data IS NOT NULL").fetchone()
    assert stored == 0  # no second copy of the rows on disk
    again = reopened(tmp_path).runs["r"].plots["pts"]
    assert again.bounds == whole.bounds
    for k, v in whole.data.view().items():
        np.testing.assert_array_equal(again.data.view()[k], v, err_msg=k)


def test_a_frame_at_a_time_goes_by_the_clients_clock_whatever_else_the_run_holds(
    tmp_path: Path,
) -> None:
    """A client clock an hour behind the server's, a layout mid-run (stamped by neither),
    a time that is no time: each plot frame is found at the time its client made it."""
    store = RunStore(tmp_path / "clock.sqlite")
    spec = PlotSpec("scatter", spatial_dim=1).to_wire()
    made = 1_000_000.0  # long before the server's clock
    frames = [Frame("layout", "clock", "c", 0, opts=LAYOUT)]
    for seq in range(1, 9):
        if seq == 5:
            frames.append(Frame("layout", "clock", "c", seq, opts=LAYOUT))  # a restart, say
            continue
        opts = {**spec, "time": made + seq}
        frames.append(Frame("plot", "clock", "c", seq, "pts", opts, (np.full((1, 2), seq),)))
    frames.append(Frame("plot", "clock", "c", 9, "pts", {**spec, "time": float("nan")}))
    for frame in frames:
        store.append([(frame, encode(frame))])
    for seq in (1, 4, 6, 8):
        found = store.latest_at_time("pts", made + seq + 0.5)
        assert found is not None and found.frame.seq == seq
    assert store.latest_at_time("pts", made) is None  # before the first
    assert [s.sent for s in store.frames("pts")][-1] is None  # NaN: no time, not a wrong one
    store.close()
