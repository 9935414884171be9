"""Server memory with two pages scrubbing 10,000 stored swissroll steps; a live page beside one.

Issue #15's targets: with 10,000 steps of the swissroll example in history, the server's RSS
with two pages scrubbing stays under 300 MB, and the live page of the same run keeps its own
latency targets (swissroll.py's: call to visible p50 <= 100 ms, p99 <= 300 ms) while another
page scrubs.

The server runs as its own process, persisting. The swissroll stand-in
(``examples/swissroll.py --synthetic``) sends 10,000 steps, each acknowledged before the next
(every one kept; the store is checked), each replace plot's x shifted by its step as in
scrub.py. The server's VmRSS and VmHWM are read with no page open; then two headless
Chromium pages open the run at a step and move their sliders, at once, to random steps as a
drag does (scrub.py's move, each timed to the frame after every replace plot shows the
step), while a thread samples the server's VmRSS. Then one page goes live and the client
sends new steps at the example's pace (20 ms a step), each timed from its call to the first
animation frame of the live page showing it (or a later step), first with the other page
idle (the baseline), then with it scrubbing.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

import _common
import scrub
from browser import Page
from streamvis import Client

RUN = scrub.RUN
PACE = 0.02  # seconds between live steps: the example's own pace
PER_STEP = ("rbf_centers", "mu_alphas", "sigma_alphas", "mu")  # replace plots sent every step
# The loss line plot's last step (its x: the step, not shifted), or -1.
LOSS_JS = """(() => {
  const xs = Bokeh.documents[0].get_model_by_name('loss')?.data.xs?.[0];
  return xs && xs.length ? xs[xs.length - 1] : -1;
})()"""
# On the live page: every animation frame whose loss plot changed, [Date.now(), its step].
LIVE_JS = f"""
const rec = window.__live = {{frames: [], stop: false}};
let last = null;
function poll() {{
  if (!window.streamvis_held) {{
    const loss = {LOSS_JS};
    if (loss !== last) {{ last = loss; rec.frames.push([Date.now(), loss]); }}
  }}
  if (!rec.stop && rec.frames.length < 100000) requestAnimationFrame(poll);
}}
requestAnimationFrame(poll);
"""
# Whether every per-step replace plot shows step arguments[0] or a later one.
SHOWS_JS = (
    f"(() => {{ {scrub.STEPS_JS} "
    f"return {list(PER_STEP)!r}.every((n) => steps[n] >= arguments[0]); }})()"
)


class RssSampler:
    """A thread reading the server's VmRSS every 0.1 s while in its ``with`` block."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.mb: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.mb.append(_common.proc_status_mb(self.pid)["VmRSS"])

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)


def stored_steps(workdir: str) -> dict[str, int]:
    """How many distinct steps each plot has in the run's database (read-only)."""
    path = f"{workdir}/streamvis_data/runs/{RUN}.sqlite"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT plot, count(DISTINCT step) FROM frames WHERE plot IS NOT NULL GROUP BY plot"
        ).fetchall()
    return {str(plot): int(n) for plot, n in rows}


def open_at(page: Page, port: int, step: int) -> float:
    """Open the run at ``step``; ms until every replace plot shows it."""
    page.open(f"http://127.0.0.1:{port}/?run={RUN}&step={step}")
    page.wait_for("Bokeh.documents[0]?.get_model_by_name('streamvis:step') != null")
    ms = page.driver.execute_async_script(scrub.MOVE_JS, step, step // 100 * 100)
    if ms is None:
        raise RuntimeError(f"the page did not show step {step} within 30 s")
    return float(ms)


def scrub_moves(
    page: Page, steps: int, moves: int, seed: int, pid: int, seconds: float,
    stop: threading.Event | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Up to ``moves`` moves to random steps (fewer if ``stop`` is set or ``seconds`` pass):
    each move's ms (None: not shown within 30 s) and the server's VmRSS after it."""
    rng = np.random.default_rng(seed)
    ms: list[float | None] = []
    rss: list[float] = []
    start = time.perf_counter()
    while len(ms) < moves and time.perf_counter() - start < seconds:
        if stop is not None and stop.is_set():
            break
        step = int(rng.integers(0, steps))
        got = page.driver.execute_async_script(scrub.MOVE_JS, step, step // 100 * 100)
        ms.append(None if got is None else float(got))
        rss.append(_common.proc_status_mb(pid)["VmRSS"])
    shown = np.array([m for m in ms if m is not None])
    return {
        "moves": len(ms),
        "missed": sum(m is None for m in ms),
        "p50_ms": _common.percentile(shown, 50),
        "p99_ms": _common.percentile(shown, 99),
        "max_ms": float(shown.max()) if shown.size else float("nan"),
        "ms": ms,
        "rss_mb": rss,
    }


def live(page: Page, client: Client, first: int, count: int) -> dict[str, Any]:
    """Send steps ``first``.. at PACE; each one's ms from its call to the live page's first
    animation frame whose loss plot shows it or a later step. The steps are the stand-in's
    own, not shifted: a shifted x moves every image's ranges, and draws them again, at each
    step, which a run does not."""
    page.js(LIVE_JS)
    calls: list[float]
    model, calls = scrub.swissroll.Synthetic(), []
    due = time.perf_counter()
    for step in range(first, first + count):
        arrays = model.step(step)
        calls.append(time.time())
        scrub.swissroll.send_step(client, model, step, arrays)
        due += PACE
        time.sleep(max(0.0, due - time.perf_counter()))
    if not client.flush(timeout=60):
        raise RuntimeError("the live steps were not acknowledged within 60 s")
    with contextlib.suppress(TimeoutError):  # steps not shown count to now (lower bounds)
        page.wait_for(f"{LOSS_JS} >= arguments[0]", first + count - 1, timeout=20)
    frames = page.js("window.__live.stop = true; return window.__live.frames;")
    collected = time.time()
    out: dict[str, Any] = {"steps": count}
    shown_at = [float("inf")] * count  # when step first + i was first shown (or a later)
    for t_ms, shows in frames:
        for i in range(min(int(shows) - first, count - 1) + 1):
            shown_at[i] = min(shown_at[i], t_ms / 1000)
    ms = np.array([(min(s, collected) - c) * 1000 for s, c in zip(shown_at, calls, strict=True)])
    out["loss"] = {
        "p50_ms": _common.percentile(ms, 50),
        "p99_ms": _common.percentile(ms, 99),
        "max_ms": float(ms.max()),
        "unseen": sum(s == float("inf") for s in shown_at),
        "ms": ms,
    }
    return out


def main() -> None:
    """Fill the history, measure RSS with none and two pages scrubbing, then live latency."""
    args = _common.parse_args(__doc__.splitlines()[0])
    steps, moves, live_steps = (300, 6, 50) if args.smoke else (10_000, 30, 300)
    with _common.ServerProcess(RUN) as server:
        client = Client(server.address, RUN, exit_timeout=30)
        try:
            fill_s = scrub.fill(client, steps)
            stored = stored_steps(server.workdir)
            time.sleep(1.0)
            no_page = server.memory()
            with Page(timeout=60) as a, Page(timeout=60) as b:
                opened = [open_at(a, server.bokeh_port, steps // 3)]
                opened.append(open_at(b, server.bokeh_port, 2 * steps // 3))
                pages_open = server.memory()
                with RssSampler(server.pid) as sampled, ThreadPoolExecutor(2) as pool:
                    jobs = [
                        pool.submit(scrub_moves, p, steps, moves, seed, server.pid, 180.0)
                        for seed, p in enumerate((a, b))
                    ]
                    both = [job.result() for job in jobs]
                two = server.memory()
                b.js("Bokeh.documents[0].get_model_by_name('streamvis:live').active = true;")
                b.wait_for(SHOWS_JS, steps - 1, timeout=30)
                base = live(b, client, steps, live_steps)
                stop = threading.Event()
                with RssSampler(server.pid) as sampled_live, ThreadPoolExecutor(1) as pool:
                    job = pool.submit(scrub_moves, a, steps, 10_000, 2, server.pid, 120.0, stop)
                    try:
                        busy = live(b, client, steps + live_steps, live_steps)
                    finally:
                        stop.set()
                    beside = job.result()
            end = server.memory()
        finally:
            client.close(timeout=30)
    kept = min(stored.get(p, 0) for p in PER_STEP)
    _common.report(
        f"swissroll stand-in: {steps} steps, each acknowledged before the next",
        ("fill s", "steps/s", "steps stored (each per-step plot, least)", "psamples stored"),
        [(fill_s, steps / fill_s, kept, stored.get("psamples", 0))],
    )
    peak_sampled = max([*sampled.mb, *sampled_live.mb, two["VmRSS"]])
    _common.report(
        "server memory (MB)",
        ("when", "VmRSS", "VmHWM (peak so far)"),
        [
            ("filled, no page", no_page["VmRSS"], no_page["VmHWM"]),
            ("two pages opened at a step", pages_open["VmRSS"], pages_open["VmHWM"]),
            ("two pages scrubbed (sampled max)", max(sampled.mb, default=two["VmRSS"]), None),
            ("after two pages scrubbed", two["VmRSS"], two["VmHWM"]),
            ("one scrubbing + live (sampled max)", max(sampled_live.mb, default=0.0), None),
            ("end", end["VmRSS"], end["VmHWM"]),
        ],
    )
    scrubs = [("page A", both[0]), ("page B", both[1]), ("page A beside live", beside)]
    _common.report(
        "scrub moves to random stored steps: slider to painted",
        ("page", "moves", "missed", "p50 ms", "p99 ms", "max ms", "RSS first MB", "RSS last MB"),
        [
            (n, r["moves"], r["missed"], r["p50_ms"], r["p99_ms"], r["max_ms"],
             r["rss_mb"][0] if r["rss_mb"] else None, r["rss_mb"][-1] if r["rss_mb"] else None)
            for n, r in scrubs
        ],
    )  # fmt: skip
    rows = []
    for key in ("loss",):
        b0, b1 = base[key], busy[key]
        rows.append(
            (key, b0["p50_ms"], b0["p99_ms"], b1["p50_ms"], b1["p99_ms"],
             b1["p50_ms"] / b0["p50_ms"], b1["p99_ms"] / b0["p99_ms"], b0["unseen"] + b1["unseen"])
        )  # fmt: skip
    _common.report(
        f"live page, {live_steps} steps at {PACE * 1000:.0f} ms: call to visible",
        ("shown by", "alone p50", "alone p99", "scrub p50", "scrub p99", "x p50", "x p99",
         "unseen"),
        rows,
    )  # fmt: skip
    lat = busy["loss"]  # as swissroll.py measures its live latency
    detail = (
        f"alone p50 {base['loss']['p50_ms']:.0f}, p99 {base['loss']['p99_ms']:.0f}"
        f" ms; other page {beside['moves']} moves"
    )
    targets = [
        _common.target(
            "server RSS with two pages scrubbing (peak)", two["VmHWM"], "<", 300, "MB",
            f"no page {no_page['VmRSS']:.0f} MB; sampled max {peak_sampled:.0f} MB; "
            f"end peak {end['VmHWM']:.0f} MB",
        ),
        _common.target("live while another scrubs: p50", lat["p50_ms"], "<=", 100, "ms", detail),
        _common.target("live while another scrubs: p99", lat["p99_ms"], "<=", 300, "ms", detail),
    ]  # fmt: skip
    notes = [
        "server: python -m streamvis, its own process, persisting; stand-in swissroll steps "
        "each acknowledged before the next (flush per step: none folded; stored steps counted "
        "in its database); x shifted by step * 10,000 as in scrub.py",
        "RSS: /proc/PID/status of the server; VmHWM is the peak since it started (the fill "
        "included); sampled: VmRSS every 0.1 s while pages scrub",
        "scrub: two headless Chromiums at once, each scrub.py's move (slider value and "
        "value_throttled set, timed in the page until every replace plot shows the step) to "
        "uniformly random steps of the whole history",
        "live: page B switched to live mode; steps sent at 20 ms; time.time() at the call "
        "to Date.now() of the first animation frame showing it or a later step: the loss line "
        "plot (as swissroll.py, whose targets these are), rbf_centers (as scrub.py's live "
        "check) and every per-step replace plot; alone: page A open, idle",
    ]
    _common.finish(
        args.out, "history_rss", targets, steps=steps, fill_seconds=fill_s, stored=stored,
        memory={"no_page": no_page, "pages_open": pages_open, "two_scrubbed": two, "end": end,
                "sampled_two_mb": sampled.mb, "sampled_live_mb": sampled_live.mb},
        opened_ms=opened, scrub=dict(scrubs), live_alone=base, live_scrubbing=busy, notes=notes,
    )  # fmt: skip


if __name__ == "__main__":
    main()
