"""The time axis in a real browser: a page at a step shows that step's frames, moves through
steps with its controls, and returns to live."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from browser import Page
from streamvis import Client
from streamvis._plots.raster import RASTER_POINTS
from streamvis._server import StreamvisServer
from test_durability import free_port, server_process

MODEL = "Bokeh.documents[0].get_model_by_name"
PTS_X = f"(() => {{ const d = {MODEL}('pts'); return d && Array.from(d.data.x); }})()"
# What the status line beside the slider shows, as a person reads it.
STATUS = f"Bokeh.index.find_one({MODEL}('streamvis:status-line'))?.markup_el.innerText"


def send(client: Client, step: int) -> None:
    client.tandem_lines("loss", step, np.full(2, float(step)))
    client.scatter("pts", np.full((3, 2), float(step)), spatial_dim=1, step=step)
    assert client.flush(timeout=10)  # at a pace the link keeps up with: every step kept


@contextlib.contextmanager
def stepped(
    stored: StreamvisServer, browser: Callable[[], Page], steps: Iterable[int], query: str
) -> Iterator[tuple[Client, Page]]:
    """A client that sent ``steps`` of run "steps", and a page of it opened at ``query``."""
    with Client(f"127.0.0.1:{stored.ingest_port}", "steps", exit_timeout=5) as client:
        client.set_layout({"pts": (0, 0, 1, 1), "loss": (0, 1, 1, 1)})
        for step in steps:
            send(client, step)
        page = browser()
        page.open(f"http://127.0.0.1:{stored.bokeh_port}/?run=steps&{query}")
        yield client, page


def drag(page: Page, value: float) -> None:
    """Move the slider to ``value`` as a person dragging it does."""
    page.js(f"const s = {MODEL}('streamvis:step'); s.value = {value}; s.value_throttled = {value};")


def shows_step(page: Page, step: int) -> None:
    """Wait until the replace plot shows what was sent at ``step``."""
    page.wait_for(f"JSON.stringify({PTS_X}) === JSON.stringify(arguments[0])", [step] * 3)


def test_a_page_at_a_step_shows_it_moves_through_steps_and_returns_to_live(
    stored: StreamvisServer, browser: Callable[[], Page]
) -> None:
    with stepped(stored, browser, range(10), "step=4") as (client, page):
        shows_step(page, 4)  # step 4's frame, not the latest
        status = page.wait_for(f"{STATUS}.includes('5 steps')")
        assert status and page.js(f"return {MODEL}('streamvis:live').active") is False
        assert page.js(f"return {MODEL}('loss:cursor').location") == 4  # the line plot's mark
        assert page.js(f"return {MODEL}('loss:after').left") == 4  # the rest of it faint
        assert page.js("return window.location.search").endswith("step=4")

        page.driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
        shows_step(page, 5)  # the arrow key: a step on
        page.wait_for("window.location.search.endsWith('step=5')")  # the address follows
        drag(page, 2)
        shows_step(page, 2)  # the slider dragged back
        paused = "[...Bokeh.index.query((v) => '_is_paused' in v)].filter((v) => v.is_paused)"
        page.wait_for(f"{paused}.length === 0")  # a step's plots paint together, then are let go

        page.js(f"{MODEL}('streamvis:live').active = true;")
        shows_step(page, 9)  # live again: the latest...
        send(client, 10)
        shows_step(page, 10)  # ...and what comes next
        assert "step=" not in page.js("return window.location.search")
        assert page.js(f"return {MODEL}('loss:cursor').visible") is False
        assert page.js(f"return {MODEL}('loss:after').visible") is False


def test_moving_through_steps_lays_nothing_out_again(
    stored: StreamvisServer, browser: Callable[[], Page]
) -> None:
    """The status line says each step without the page being laid out again: a Div's new
    text laid every figure out again (11-31 ms a step) and let go of the plots held for it."""
    with Client(f"127.0.0.1:{stored.ingest_port}", "flat", exit_timeout=5) as client:
        client.set_layout({"pts": (0, 0, 1, 1)})
        for step in range(6):  # y stays 0: no step changes the width of an axis' labels
            flat = np.array([[step, 0.0], [step + 1, 0.0]])
            client.scatter("pts", flat, spatial_dim=1, step=step)
            assert client.flush(timeout=10)  # each kept, none folded into the next
        page = browser()
        page.open(f"http://127.0.0.1:{stored.bokeh_port}/?run=flat&step=1")
        page.wait_for(f"{PTS_X}?.[0] === 1 && {STATUS}?.includes('step 1 ')")
        page.js(
            "window.relaid = 0;"
            "for (const view of Bokeh.index.query((v) => '_is_paused' in v)) {"
            "  const after = view._after_layout.bind(view);"
            "  view._after_layout = () => { window.relaid++; after(); }; }"
        )
        for step in range(2, 5):  # each says "step K · N steps behind live"
            drag(page, step)
            page.wait_for(f"{PTS_X}?.[0] === {step} && {STATUS}?.includes('step {step} ')")
        assert page.js("return window.relaid") == 0


def test_steps_that_show_the_same_frame_of_an_image_plot_do_not_send_it_again(
    stored: StreamvisServer, browser: Callable[[], Page]
) -> None:
    """A big plot sent every 100 steps (the swissroll's samples) shows one frame for 100 steps:
    playing through them drew and sent its image anew at every one. And a step whose new
    axis labels move the image's frame by a few pixels neither draws it again nor holds the
    page's plots for an update that has nothing to send."""
    cloud = np.random.default_rng(0).uniform((-4, 0), (4, 8), size=(RASTER_POINTS, 2))
    with Client(f"127.0.0.1:{stored.ingest_port}", "big", exit_timeout=5) as client:
        client.set_layout({"pts": (0, 0, 1, 1), "cloud": (0, 1, 1, 1)})
        for step in range(6):
            client.scatter("pts", np.full((3, 2), float(step)), spatial_dim=1, step=step)
            if step in (0, 5):
                moved = cloud + np.array([step, 2 * step])  # at 5, y labels of two digits:
                client.scatter("cloud", moved, spatial_dim=1, step=step)  # a narrower frame
            assert client.flush(timeout=10)  # each kept, none folded into the next
        page = browser()
        page.open(f"http://127.0.0.1:{stored.bokeh_port}/?run=big&step=1")
        shows_step(page, 1)
        left = f"{MODEL}('cloud')?.data.left?.[0]"
        page.wait_for(f"{left} < 0 && {MODEL}('cloud').data.image[0].length > 1")  # drawn
        page.js("window.sent = 0;")
        page.js(f"{MODEL}('cloud').properties.data.change.connect(() => window.sent++);")
        for step in (2, 3, 4):
            drag(page, step)
            shows_step(page, step)
        assert page.js("return window.sent") == 0  # step 0's frame all along: still shown
        page.js(
            f"window.held = []; const hold = {MODEL}('streamvis:hold');"
            "hold.properties.tags.change.connect("
            "  () => window.held.push(hold.tags.length ? 'hold' : 'release'));"
        )
        drag(page, 5)
        shows_step(page, 5)
        page.wait_for(f"{left} > 0")  # step 5's frame, drawn and sent
        deadline = time.monotonic() + 20
        while not settled(stored, "big") and time.monotonic() < deadline:
            time.sleep(0.02)  # until the page's ranges came back and were taken in
        assert settled(stored, "big")
        # Held once, for the step's plots, and let go by its tick: not held and released again
        # for the update the image's new ranges ran, which had nothing to send.
        assert page.js("return window.held") == ["hold"]


def settled(server: StreamvisServer, run: str) -> bool:
    """Whether every page of ``run`` has sent all it has to and heard that it painted it."""
    pages = [cast(Any, page) for page in server.hub._views.get(run, ())]
    return bool(pages) and all(
        not page.clock.dirty and not page.clock.deferred and page._scheduled is None
        and page.clock.echoed >= page.clock.sent
        for page in pages
    )  # fmt: skip


def test_play_moves_the_page_through_every_step_to_the_end(
    stored: StreamvisServer, browser: Callable[[], Page]
) -> None:
    with stepped(stored, browser, range(12), "step=0") as (_, page):
        shows_step(page, 0)
        page.js(f"""window.seen = new Set();
            (function look() {{ const x = {PTS_X}; if (x) window.seen.add(x[0]);
              requestAnimationFrame(look); }})();
            {MODEL}('streamvis:speed').value = '5'; {MODEL}('streamvis:play').active = true;""")
        shows_step(page, 11)  # played to the end (read ahead as it went)...
        page.wait_for(f"{MODEL}('streamvis:play').active === false")  # ...and stopped there
        seen = page.js("return Array.from(window.seen).sort((a, b) => a - b)")
        assert len(seen) >= 10, seen  # at 5 steps a second, (nearly) every step was shown


def test_an_append_plot_at_a_step_shows_the_rows_it_held_then(
    stored: StreamvisServer, browser: Callable[[], Page]
) -> None:
    with Client(f"127.0.0.1:{stored.ingest_port}", "trail", exit_timeout=5) as client:
        client.set_layout({"trail": (0, 0, 1, 1)})
        for step in range(8):  # two points a step
            arr = np.full((2, 2), float(step))
            client.scatter("trail", arr, spatial_dim=1, append=True, step=step)
        assert client.flush(timeout=10)
        page = browser()
        page.open(f"http://127.0.0.1:{stored.bokeh_port}/?run=trail&step=3")
        trail_x = f"Array.from({MODEL}('trail').data.x)"
        shown = [float(s) for s in range(4) for _ in range(2)]  # steps 0 to 3, not the rest
        page.wait_for(f"JSON.stringify({trail_x}) === JSON.stringify(arguments[0])", shown)
        drag(page, 6)
        page.wait_for(f"{trail_x}.length === 14 && {trail_x}[13] === 6")
        page.js(f"{MODEL}('streamvis:live').active = true;")
        client.scatter("trail", np.full((2, 2), 9.0), spatial_dim=1, append=True)
        page.wait_for(f"{trail_x}.length === 18")  # live: every row, and the new ones


def test_a_run_without_steps_scrubs_by_the_time_its_frames_were_made(
    stored: StreamvisServer, browser: Callable[[], Page]
) -> None:
    with Client(f"127.0.0.1:{stored.ingest_port}", "clock", exit_timeout=5) as client:
        client.set_layout({"pts": (0, 0, 1, 1)})
        for value in range(6):
            client.scatter("pts", np.full((3, 2), float(value)), spatial_dim=1)  # no step
            assert client.flush(timeout=10)
            time.sleep(0.05)  # the time axis needs time to pass between frames
        assert stored.hub.store is not None
        made = [s.sent or 0.0 for s in stored.hub.store.open("clock").frames("pts")]
        between = [round((a + b) / 2 - made[0], 3) for a, b in itertools.pairwise(made)]
        page = browser()
        page.open(f"http://127.0.0.1:{stored.bokeh_port}/?run=clock&time={between[2]}")
        shows_step(page, 2)  # the frame made before that time, not the latest
        status = page.wait_for(STATUS)
        assert "s after the run's first frame" in status and "behind live" in status
        at = between[4]
        drag(page, at)
        shows_step(page, 4)  # the slider moves by time
        page.wait_for(f"window.location.search.endsWith('time={at}')")
        page.js(f"{MODEL}('streamvis:live').active = true;")
        shows_step(page, 5)


def test_a_page_says_when_steps_went_back(
    stored: StreamvisServer, browser: Callable[[], Page]
) -> None:
    with stepped(stored, browser, [*range(6), 3, 4], "") as (_, page):  # resumed at step 3
        shows_step(page, 4)  # live: the latest frame
        status = STATUS
        assert "steps went back once, last from 5 to 3" in page.wait_for(
            f"{status}.includes('went back') && {status}"
        )


def test_a_step_shown_before_a_kill_9_is_shown_the_same_after_a_restart(
    tmp_path: Path, browser: Callable[[], Page]
) -> None:
    rest, bokeh = free_port(), free_port()
    with Client(f"127.0.0.1:{rest}", "fault", exit_timeout=5) as client:
        with server_process(rest, bokeh, tmp_path) as first:
            client.set_layout({"pts": (0, 0, 1, 1), "loss": (0, 1, 1, 1)})
            for step in range(8):
                send(client, step)
            page = browser()
            page.open(f"http://127.0.0.1:{bokeh}/?run=fault&step=3")
            shows_step(page, 3)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
        with server_process(rest, bokeh, tmp_path):
            page.reload()  # the address kept the step
            shows_step(page, 3)
            assert page.js(f"return {MODEL}('streamvis:live').active") is False


def test_nan_and_inf_are_marked_where_they_occur_and_counted_across_a_restart(
    tmp_path: Path, browser: Callable[[], Page]
) -> None:
    rest, bokeh = free_port(), free_port()
    marks = f"Array.from({MODEL}('loss:figure').renderers.find((r) => r.y_range_name"
    marks += " === 'streamvis:marks').data_source.data.x)"
    label = f"{MODEL}('loss:figure').center.find((m) => m.type === 'Label').text"
    with Client(f"127.0.0.1:{rest}", "bad", exit_timeout=5) as client:
        with server_process(rest, bokeh, tmp_path) as first:
            client.set_layout({"loss": (0, 0, 1, 1)})
            for step in range(8):
                ys = {3: [np.nan, 1.0], 5: [np.inf, -np.inf]}.get(step, [1.0, 2.0])
                client.tandem_lines("loss", step, np.array(ys))
            assert client.flush(timeout=10)
            page = browser()
            page.open(f"http://127.0.0.1:{bokeh}/?run=bad")
            shown = page.wait_for(f"{MODEL}('loss:figure') && {marks}.length === 2 && {marks}")
            assert shown == [3, 5]  # a mark at each step with one, however many it had
            assert page.wait_for(label) == "3 non-finite values (NaN, inf) since 3"
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
        with server_process(rest, bokeh, tmp_path):
            page.reload()  # read back from the store
            shown = page.wait_for(f"{MODEL}('loss:figure') && {marks}.length === 2 && {marks}")
            assert shown == [3, 5] and page.wait_for(label).startswith("3 non-finite")
