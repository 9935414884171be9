"""Run logs: replay what was accepted, survive a torn tail, compact replaced data away."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
import pytest

from streamvis import store as store_module
from streamvis.hub import Hub
from streamvis.protocol import Frame, encode
from streamvis.specs import PlotSpec
from streamvis.store import Store

LAYOUT = {"cells": {"loss": [0, 0, 1, 1], "pts": [0, 1, 1, 1]}}


class Sender:
    def __init__(self, hub: Hub, cid: str = "c") -> None:
        self.hub, self.cid, self.seq = hub, cid, 0

    def send(self, op: str, name: str | None = None, *arrays: np.ndarray, **opts: object) -> None:
        frame = Frame(
            op=op, run="r", cid=self.cid, seq=self.seq, name=name, opts=opts, arrays=arrays
        )  # type: ignore[arg-type]
        self.seq += 1
        self.hub.apply(frame, encode(frame))

    def tandem(self, step: int) -> None:
        spec = PlotSpec("tandem_lines", append=True, palette="Viridis256").to_wire()
        self.send("plot", "loss", np.array(step), np.arange(3.0) + step, **spec)

    def scatter(self, n: int) -> None:
        self.send("plot", "pts", np.full((n, 2), float(n)), **PlotSpec("scatter").to_wire())


@pytest.fixture
def sender(tmp_path: Path) -> Sender:
    """A client's frames into a persistent hub in ``tmp_path``, layout already sent."""
    sender = Sender(Hub(Store(tmp_path)))
    sender.send("layout", **LAYOUT)
    return sender


@pytest.fixture
def small_compaction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compact once 20 kB are dead, so a test needs only a few hundred small replaces."""
    monkeypatch.setattr(store_module, "COMPACT_MIN_BYTES", 20_000)


def reopened(directory: Path) -> Hub:
    hub = Hub(Store(directory))
    hub.load()
    return hub


def test_replay_restores_every_plot_and_the_dedup_state(tmp_path: Path, sender: Sender) -> None:
    for step in range(50):
        sender.tandem(step)
    sender.scatter(4)
    sender.hub.store.close()  # type: ignore[union-attr]

    again = reopened(tmp_path)
    run = again.runs["r"]
    assert run.cells == {"loss": (0, 0, 1, 1), "pts": (0, 1, 1, 1)}
    assert run.plots["loss"].data.view()["x"].tolist() == list(range(50))
    assert run.plots["pts"].data.view()["x"].tolist() == [4.0] * 4
    sender.hub, sender.seq = again, 10  # a client resending what was already applied
    sender.tandem(999)
    assert len(run.plots["loss"].data) == 50


def test_a_torn_last_record_is_cut_off_with_a_warning(
    tmp_path: Path, sender: Sender, caplog: pytest.LogCaptureFixture
) -> None:
    for step in range(10):
        sender.tandem(step)
    sender.hub.store.close()  # type: ignore[union-attr]
    path = tmp_path / "r.log"
    path.write_bytes(path.read_bytes()[:-7])  # a crash in the middle of the last write

    with caplog.at_level(logging.WARNING):
        again = reopened(tmp_path)
    assert "torn or corrupt record" in caplog.text
    assert again.runs["r"].plots["loss"].data.view()["x"].tolist() == list(range(9))
    Sender(again, "d").tandem(100)  # appending after the cut works and replays
    again.store.close()  # type: ignore[union-attr]
    assert reopened(tmp_path).runs["r"].plots["loss"].data.view()["x"].tolist()[-2:] == [8, 100]


def test_replaced_frames_are_compacted_away(
    tmp_path: Path, sender: Sender, small_compaction: None
) -> None:
    sender.tandem(0)
    for n in range(1, 400):
        sender.scatter(n % 50 + 1)
    path = tmp_path / "r.log"
    assert path.stat().st_size < 60_000  # 400 replaces of up to 800 bytes would be ~200 kB
    sender.tandem(1)
    sender.hub.store.close()  # type: ignore[union-attr]
    again = reopened(tmp_path)
    assert again.runs["r"].plots["pts"].data.view()["x"].tolist() == [50.0] * 50
    assert again.runs["r"].plots["loss"].data.view()["x"].tolist() == [0, 1]
    assert again.runs["r"].last_seq == {"c": sender.seq - 1}


def test_clear_and_delete_remove_the_data(tmp_path: Path, sender: Sender) -> None:
    sender.tandem(0)
    sender.send("clear")
    assert reopened(tmp_path).runs["r"].plots == {}
    assert asyncio.run(sender.hub.delete("r")) and not (tmp_path / "r.log").exists()
    assert not asyncio.run(sender.hub.delete("r"))


def test_compaction_keeps_plots_sent_before_the_latest_layout(
    tmp_path: Path, sender: Sender, small_compaction: None
) -> None:
    for step in range(10):
        sender.tandem(step)
    sender.send("layout", cells={**LAYOUT["cells"], "extra": [1, 0, 1, 1]})  # a restarted script
    for n in range(1, 300):
        sender.scatter(n % 50 + 1)  # enough replaces to compact
    sender.hub.store.close()  # type: ignore[union-attr]
    again = reopened(tmp_path)
    assert again.runs["r"].plots["loss"].data.view()["x"].tolist() == list(range(10))
    assert "extra" in (again.runs["r"].cells or {})


def test_fig_kwargs_sent_once_survive_compaction(
    tmp_path: Path, sender: Sender, small_compaction: None
) -> None:
    with_title = PlotSpec("scatter", fig_kwargs={"title": "T"}).to_wire()
    sender.send("plot", "pts", np.zeros((3, 2)), **with_title)
    for n in range(1, 300):
        sender.scatter(n % 50 + 1)  # replaces without fig_kwargs, enough to compact
    sender.hub.store.close()  # type: ignore[union-attr]
    again = reopened(tmp_path)
    assert again.runs["r"].plots["pts"].fig_kwargs == {"title": "T"}
    assert again.runs["r"].plots["pts"].data.view()["x"].tolist() == [50.0] * 50
