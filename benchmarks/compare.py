"""A page comparing 10 runs of 40 lines each, live, beside the page's own limit here.

Each run's history is sent first (1,000 and then 100,000 steps; a server of its own, stored
as deployed); then all ten go on at the example's pace (a step every 20 ms each) while
headless Chromium shows ``/?run=r0&...&run=r9``: one figure with the ten runs' lines overlaid.
Both pages are measured after a warm-up (10 s): a page's first updates are several times
slower than its later ones. The page records when run r0's newest point arrives and the
first animation frame that holds it (``Date.now()``), the client when it called
``tandem_lines`` for it (``time.time()``).
The server's cost per page update at both lengths (building the ten runs' page data and the
message, in this process, as ``long_run`` times one run's) says whether it follows what is
shown or the history.

The limit is a bare Bokeh app on the same machine (no streamvis): one figure with the same
glyphs (ten sources of 40 lines) and the same data (what the streamvis page held at the end
of the long run), sent again as soon as the page echoes that it painted the last.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

import _common
import long_run
from browser import Page
from streamvis import Client

RUNS, LINES = 10, 40
PACE = 0.02  # seconds between two steps of a run: the example's pace
KEYS = ["loss"] + [f"loss@r{i}" for i in range(1, RUNS)]  # each run's source on the page
QUERY = "?" + "&".join(f"run=r{i}" for i in range(RUNS))
READY_JS = f"""return {KEYS!r}.every((key) => {{
  const s = Bokeh.documents[0].get_model_by_name(key);
  return s && s.data.xs.length === {LINES} && s.data.xs[0].length > 0;
}})"""
# What the page shows of each run: its lines' x (shared) and values, as plain arrays.
SHOWN_JS = f"""return {KEYS!r}.map((k) => {{
  const d = Bokeh.documents[0].get_model_by_name(k).data;
  return [Array.from(d.xs[0]), d.ys.map((y) => Array.from(y))];
}})"""
# Run r0's source: when its newest x arrives, and the first animation frame holding it.
RECORD_JS = """
const doc = Bokeh.documents[0], rec = window.__sv = {signal: [], frame: [], stop: false};
const source = () => doc.get_model_by_name('loss');
const newest = () => { const x = source().data.xs[0]; return x[x.length - 1]; };
source().properties.data.change.connect(() => rec.signal.push([Date.now(), newest()]));
let last = null;
const poll = () => {
  const x = newest();
  if (x !== last) { last = x; rec.frame.push([Date.now(), x]); }
  if (!rec.stop && rec.frame.length < 100000) requestAnimationFrame(poll);
};
requestAnimationFrame(poll);
"""


def values(run: int, step: int) -> np.ndarray:
    """Run ``run``'s 40 values at ``step``: curves that drift, one per line."""
    phases = np.arange(LINES, dtype=np.float32) / 7
    return np.asarray(np.sin(np.float32(step * 1e-3 + run) + phases), np.float32)


def fill(clients: list[Client], steps: int) -> None:
    """Send each run's first ``steps`` steps, as fast as the server takes them."""
    for client in clients:
        client.set_layout({"loss": (0, 0, 1, 1)})
    for step in range(steps):
        for run, client in enumerate(clients):
            client.tandem_lines("loss", step, values(run, step))
        if step % 5000 == 4999:
            for client in clients:
                if not client.flush(timeout=300):
                    raise RuntimeError(f"step {step} was not acknowledged within 300 s")
    for client in clients:
        if not client.flush(timeout=300):
            raise RuntimeError("the history was not acknowledged within 300 s")


def pace(
    clients: list[Client], step: int, seconds: float, calls: dict[int, float] | None = None
) -> int:
    """Send every run's next steps at the example's pace for ``seconds``, noting when each
    step was sent in ``calls``; the next step."""
    start, first = time.perf_counter(), step
    while time.perf_counter() - start < seconds:
        if calls is not None:
            calls[step] = time.time()
        for run, client in enumerate(clients):
            client.tandem_lines("loss", step, values(run, step))
        step += 1
        time.sleep(max(0.0, start + (step - first) * PACE - time.perf_counter()))
    return step


def live(history: int, duration: float, warm: float) -> dict[str, Any]:
    """Fill ten runs with ``history`` steps, then go on at the example's pace with a page of
    all ten open: ``warm`` seconds, then ``duration`` seconds measured."""
    with _common.ServerProcess("r0", timeout=60) as server, Page(timeout=60) as page:
        clients = [Client(server.address, f"r{i}", exit_timeout=60) for i in range(RUNS)]
        try:
            started = time.perf_counter()
            fill(clients, history)
            fill_seconds = time.perf_counter() - started
            page.open(f"http://127.0.0.1:{server.bokeh_port}/{QUERY}")
            page.all_rendered()
            page.wait_for(f"(() => {{ {READY_JS} }})()", timeout=120)
            step = history
            step = pace(clients, step, warm)  # the page warms up (its first updates are slow)
            page.js(RECORD_JS)
            calls: dict[int, float] = {}
            cpu = _common.cpu_seconds([server.pid])
            wall, start = time.time(), time.perf_counter()
            step = pace(clients, step, duration, calls)
            seconds = time.perf_counter() - start
            cpu = _common.cpu_seconds([server.pid]) - cpu
            for client in clients:
                client.flush(timeout=60)
            page.wait_for(f"window.__sv.frame.at(-1)?.[1] >= {step - 1}", timeout=30)
            records = page.js("window.__sv.stop = true; return window.__sv;")
            shown = page.js(SHOWN_JS)
        finally:
            for client in clients:
                client.close(timeout=60)
    updates = [t for t, _ in records["signal"] if wall * 1000 <= t <= (wall + seconds) * 1000]
    return {
        "history": history,
        "fill_seconds": fill_seconds,
        "steps": step - history,
        "updates_per_s": len(updates) / seconds,
        "latency_ms": latencies(records["frame"], calls),
        "server_cores": cpu / seconds,
        "points_per_line": [len(x) for x, _ in shown],
        "shown": shown,
        "server_mb": server.memory() if server.proc.poll() is None else {},
    }


def latencies(frames: list[list[float]], calls: dict[int, float]) -> dict[str, float]:
    """Each step's call-to-visible time: from its call to the first frame that held it (or a
    later step: drawn together)."""
    ms, shown = [], min(calls) - 1
    for t_ms, newest in sorted(frames):
        for step in range(shown + 1, int(newest) + 1):
            if step in calls:
                ms.append(t_ms - calls[step] * 1000)
        shown = max(shown, int(newest))
    return {"p50": _common.percentile(ms, 50), "p99": _common.percentile(ms, 99), "n": len(ms)}


# The bare app's page: echo each update's number once an animation frame paints it.
BARE_ECHO_JS = (
    "const n = tick.tags[0]; requestAnimationFrame(() => { tick.text = `${n} ${Date.now()}`; });"
)


@contextmanager
def bare_app(shown: list[Any]) -> Iterator[tuple[int, list[tuple[float, float, float]]]]:
    """A bare Bokeh server (its own thread and loop) whose page is the streamvis page's figure
    with pre-made data, sent again as soon as its last update is painted. Yields its port
    and the (sent, painted, echoed) times of each update, in seconds since the epoch."""
    from bokeh.events import DocumentReady
    from bokeh.models import ColumnDataSource, CustomJS
    from bokeh.models.widgets import Div
    from bokeh.palettes import Viridis256
    from bokeh.plotting import figure
    from bokeh.transform import linear_cmap

    def lines(x: list[float], ys: list[list[float]], shift: float) -> dict[str, Any]:
        xs = [np.asarray(x, np.float32)] * LINES
        values = [np.asarray(y, np.float32) + np.float32(shift) for y in ys]
        return {"xs": xs, "ys": values, "c": np.arange(LINES, dtype=np.int32)}

    # What the streamvis page showed, and the same a little higher: each update repaints.
    variants = [[lines(x, ys, shift) for x, ys in shown] for shift in (0.0, 1e-3)]
    times: list[tuple[float, float, float]] = []
    colors = [Viridis256[int(i)] for i in np.linspace(0, 255, LINES)]
    dashes = ("solid", "dashed", "dotted", "dotdash", "dashdot")

    def make(doc: Any) -> None:
        fig = figure(width=440, height=340, title="loss", tools="pan,wheel_zoom,box_zoom,reset")
        sources = [ColumnDataSource(data=v) for v in variants[0]]
        color = linear_cmap("c", colors, 0, LINES - 1)
        for k, source in enumerate(sources):
            dash = dashes[k % len(dashes)]
            fig.multi_line("xs", "ys", source=source, line_width=1, line_dash=dash,
                           line_color=color, legend_label=f"r{k}")  # fmt: skip
        tick = Div(visible=False, tags=[0], text="")
        tick.js_on_change("tags", CustomJS(args={"tick": tick}, code=BARE_ECHO_JS))
        sent: dict[int, float] = {}

        def send() -> None:
            n = tick.tags[0] + 1
            for source, data in zip(sources, variants[n % 2], strict=True):
                source.data = data
            sent[n] = time.time()
            tick.tags = [n]

        def echoed(attr: str, old: Any, new: Any) -> None:
            n, painted = (int(v) for v in new.split())
            if n in sent:
                times.append((sent.pop(n), painted / 1000, time.time()))
            doc.add_next_tick_callback(send)

        tick.on_change("text", echoed)
        doc.add_root(fig)
        doc.add_root(tick)  # the page asks for the first update once it holds the document:
        ready = CustomJS(args={"tick": tick}, code="tick.text = `0 ${Date.now()}`;")
        doc.js_on_event(DocumentReady, ready)

    with _common.bokeh_app(make) as port:
        yield port, times


def limit(shown: list[Any], duration: float, warm: float) -> dict[str, Any]:
    """The bare Bokeh page's updates/s and send-to-paint times, for ``duration`` seconds
    after ``warm`` seconds."""
    with bare_app(shown) as (port, times), Page(timeout=60) as page:
        page.open(f"http://127.0.0.1:{port}/")
        page.all_rendered()
        deadline = time.monotonic() + 120
        while len(times) < 2 and time.monotonic() < deadline:  # its first updates painted
            time.sleep(0.05)
        time.sleep(warm)
        first = len(times)
        start = time.perf_counter()
        time.sleep(duration)
        seconds = time.perf_counter() - start
        done = times[first:]
    ms = [1000 * (painted - sent) for sent, painted, _ in done]
    return {
        "updates_per_s": len(done) / seconds,
        "latency_ms": {"p50": _common.percentile(ms, 50), "p99": _common.percentile(ms, 99)},
        "points_per_line": [len(x) for x, _ in shown],
    }


def update_cost(history: int) -> float:
    """Milliseconds the server takes to build one update of ten runs of ``history`` steps
    (each run's page data and its part of the message; one run's, ten times)."""
    rng = np.random.default_rng(0)
    pool = [rng.standard_normal(LINES).astype(np.float32) for _ in range(64)]
    state = long_run.new_state(history, pool)
    return RUNS * float(long_run.page_update(state, 20)["update_and_message_ms"])


def main() -> None:
    args = _common.parse_args(__doc__.splitlines()[0])
    histories, duration, warm = (
        ((200, 2_000), 3.0, 2.0) if args.smoke else ((1_000, 100_000), 10.0, 10.0)
    )
    short, long = (live(h, duration, warm) for h in histories)
    bare = limit(long.pop("shown"), duration, warm)
    short.pop("shown")
    costs = [update_cost(h) for h in histories]
    rows = [
        (f"{r['history']:,} steps", r["fill_seconds"], r["updates_per_s"], r["latency_ms"]["p50"],
         r["latency_ms"]["p99"], cost, r["server_cores"], max(r["points_per_line"]))
        for r, cost in zip((short, long), costs, strict=True)
    ]  # fmt: skip
    rows.append(("bare Bokeh limit", "", bare["updates_per_s"], bare["latency_ms"]["p50"],
                 bare["latency_ms"]["p99"], "", "", max(bare["points_per_line"])))  # fmt: skip
    _common.report(
        f"{RUNS} runs x {LINES} lines on one page, a step every {PACE * 1000:g} ms each",
        ("history", "fill s", "updates/s", "p50 ms", "p99 ms", "update ms (srv)", "srv cores",
         "points/line"),
        rows,
    )  # fmt: skip
    ratio = costs[1] / costs[0]
    name = f"{histories[1]:,} vs {histories[0]:,} steps"
    targets = [
        _common.target("page updates/s, 10 runs", long["updates_per_s"], ">=", 10, "/s"),
        _common.target("call-to-visible p50, 10 runs", long["latency_ms"]["p50"], "<=", 150, "ms"),
        _common.target(
            "updates/s vs the bare Bokeh limit",
            long["updates_per_s"] / bare["updates_per_s"] if bare["updates_per_s"] else math.nan,
            ">=",
            0.7,
            "x",
            f"{bare['updates_per_s']:.2f} /s bare, p50 {bare['latency_ms']['p50']:.0f} ms",
        ),
        _common.target(
            f"server cost per update, {name}",
            ratio,
            "<=",
            1.5,
            "x",
            f"{costs[1]:.1f} vs {costs[0]:.1f} ms",
        ),
    ]
    _common.finish(args.out, "compare", targets, short=short, long=long, bare=bare, costs=costs)


if __name__ == "__main__":
    main()
