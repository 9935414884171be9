"""The swissroll dashboard (examples/swissroll.py) as fast as it goes, without and with a page.

The server runs as its own process (``python -m streamvis``), so its RSS is its own.
Each phase sends steps for a fixed time, then calls ``flush()``; steps/s counts that too.
With a page, headless Chromium records when each new loss point arrives (the source's
``data`` changing: a line plot's page source is one row per line, replaced on each update)
and the first animation frame that holds it (a requestAnimationFrame poll), with
``Date.now()``; the client records ``time.time()`` when it calls tandem_lines for each step.
Both clocks are this machine's wall clock.
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import _common
from browser import Page
from streamvis import Client

swissroll = _common.load_example("swissroll")
RUN = "swissroll"
MAX_STEPS = 200_000
INSTALL_JS = """
const doc = Bokeh.documents[0];
const rec = window.__sv = {signal: [], frame: [], stop: false};
const first = doc.get_model_by_name('loss');
const xOf = (data) => data.xs[0];  // every line of the tandem plot has the same x
const arrived = () => {  // new rows (a new summary once the plot is long)
  const x = xOf(first.data);
  if (rec.signal.length < 200000) rec.signal.push([Date.now(), x.length, x[x.length - 1]]);
};
first.properties.data.change.connect(arrived);
let last = -1;
const poll = () => {
  const src = doc.get_model_by_name('loss');
  if (src !== null) {
    const x = xOf(src.data);
    if (x[x.length - 1] !== last) {
      last = x[x.length - 1];
      rec.frame.push([Date.now(), x.length, last]);
    }
  }
  if (!rec.stop && rec.frame.length < 200000) requestAnimationFrame(poll);
};
requestAnimationFrame(poll);
return xOf(first.data).length;
"""
LAST_X = (
    "(() => { const x = Bokeh.documents[0].get_model_by_name('loss').data.xs[0];"
    " return x[x.length - 1]; })()"
)


Send = Callable[[Client, Any, int, dict[str, np.ndarray]], None]


def send_loss_only(client: Client, model: Any, step: int, arrays: dict[str, np.ndarray]) -> None:
    """Only the loss call of a step: the page's best case, with no other plot to paint."""
    client.tandem_lines("loss", step, arrays["loss"], "Viridis256")


def send_step(
    client: Client, model: Any, step: int, calls: list[float], send: Send = swissroll.send_step
) -> float:
    """One step of ``swissroll.run``'s loop; returns the seconds spent in the model itself.

    The psamples draw (every 100 steps) is counted with the calls.
    """
    start = time.perf_counter()
    arrays = model.step(step)
    model_seconds = time.perf_counter() - start
    calls.append(time.time())
    send(client, model, step, arrays)
    return model_seconds


def page_metrics(
    records: dict[str, list[list[float]]],
    calls: list[float],
    start: float,
    end: float,
    collected: float,
) -> dict[str, Any]:
    """Updates/s, call-to-page latency and lag (unseen steps count as lower bounds)."""
    out: dict[str, Any] = {}
    for kind in ("signal", "frame"):
        rows = sorted(records[kind])
        inside = [r for r in rows if start <= r[0] / 1000 <= end]
        out[f"{kind}_updates_per_s"] = len(inside) / (end - start)
        latencies = []
        shown = 0  # steps 1..shown are on the page; calls[i] is step i + 1
        for t_ms, _length, last_x in rows:
            newest = min(int(last_x), len(calls))
            for step in range(shown + 1, newest + 1):
                latencies.append(t_ms / 1000 - calls[step - 1])
            shown = max(shown, newest)
        unseen = len(calls) - shown
        latencies.extend(collected - t for t in calls[shown:])
        ms = np.asarray(latencies) * 1000
        out[f"{kind}_latency_ms"] = {
            "p50": _common.percentile(ms, 50),
            "p99": _common.percentile(ms, 99),
            "max": float(ms.max()) if ms.size else float("nan"),
            "min": float(ms.min()) if ms.size else float("nan"),
            "steps": int(ms.size),
            "unseen_steps": unseen,
            "lower_bound": unseen > 0,
        }
        out[f"{kind}_steps_seen"] = shown
    frames = sorted(records["frame"])
    times = [r[0] / 1000 for r in frames]
    lags = []
    for t in np.arange(start, end, 0.1):
        client_step = bisect.bisect_right(calls, t)
        i = bisect.bisect_right(times, t) - 1
        page_step = int(frames[i][2]) if i >= 0 else 0
        lags.append(client_step - page_step)
    out["lag_steps"] = {
        "median": _common.percentile(lags, 50),
        "max": float(max(lags)) if lags else float("nan"),
        "samples": len(lags),
    }
    return out


def phase(
    label: str,
    duration: float,
    browser: bool,
    catch_up: float,
    delay: float = 0.0,
    send: Send = swissroll.send_step,
) -> dict[str, Any]:
    """Run the dashboard for ``duration`` seconds against a fresh server (and maybe a page).

    Also records the CPU time the client, the server and Chromium took meanwhile.
    """
    print(f"swissroll for {duration:g} s: {label}", flush=True)
    page = Page(timeout=30) if browser else None
    try:
        with _common.ServerProcess(RUN) as server:
            client = Client(server.address, RUN, exit_timeout=30)
            try:
                model = swissroll.Synthetic()
                client.set_layout(swissroll.LAYOUT)
                send_step(client, model, 0, [], send)
                if not client.flush(timeout=30):
                    raise RuntimeError("the first step was not acknowledged within 30 s")
                if page is not None:
                    page.open(server.url(RUN))
                    page.all_rendered()
                    page.wait_for("Bokeh.documents[0].get_model_by_name('loss') !== null")
                    page.js(INSTALL_JS)
                calls: list[float] = []
                model_seconds = 0.0
                cpu_start = _cpu(server.pid)
                wall_start, start = time.time(), time.perf_counter()
                step = 1
                while time.perf_counter() - start < duration and step < MAX_STEPS:
                    model_seconds += send_step(client, model, step, calls, send)
                    step += 1
                    if delay:
                        time.sleep(delay)
                loop_seconds = time.perf_counter() - start
                if not client.flush(timeout=60):
                    raise RuntimeError("flush after the run timed out")
                seconds = time.perf_counter() - start
                cpu = {k: (v - cpu_start[k]) / seconds for k, v in _cpu(server.pid).items()}
                wall_end = wall_start + seconds
                steps = step - 1
                result: dict[str, Any] = {
                    "label": label,
                    "browser": browser,
                    "delay": delay,
                    "steps": steps,
                    "seconds": seconds,
                    "steps_per_s": steps / seconds,
                    "flush_seconds": seconds - loop_seconds,
                    "model_ms_per_step": 1000 * model_seconds / steps,
                    "client_ms_per_step": 1000 * (loop_seconds - model_seconds) / steps
                    - 1000 * delay,
                    "cores": cpu,
                }
                if page is not None:
                    flushed = time.perf_counter()
                    try:
                        page.wait_for(f"{LAST_X} >= {steps}", timeout=catch_up)
                        result["page_catch_up_seconds"] = time.perf_counter() - flushed
                    except TimeoutError:
                        result["page_catch_up_seconds"] = float("nan")
                    records = page.js("window.__sv.stop = true; return window.__sv;")
                    collected = time.time()
                    result.update(page_metrics(records, calls, wall_start, wall_end, collected))
                    result["catch_up_limit_seconds"] = catch_up
                result["server_mb"] = server.memory()
            finally:
                client.close(timeout=30)
    finally:
        if page is not None:
            page.close()
    return result


def _cpu(server_pid: int) -> dict[str, float]:
    """CPU seconds so far of this (client) process, the server and every Chromium process."""
    return {
        "client": _common.cpu_seconds(["self"]),
        "server": _common.cpu_seconds([server_pid]),
        "chromium": _common.cpu_seconds(_common.chromium_pids()),
    }


def catch_up_text(r: dict[str, Any]) -> str:
    """Whether and when the page showed the last step after flush()."""
    caught = r["page_catch_up_seconds"]
    if caught == caught:
        return f"showed the last step {caught:.2f} s after flush() returned"
    return (
        f"did not show the last step within {r['catch_up_limit_seconds']:g} s after flush(): "
        f"it was at step {r['frame_steps_seen']:,} of {r['steps']:,} (latencies of unseen steps "
        "are lower bounds)"
    )


def main() -> None:
    """Every phase; print and save."""
    args = _common.parse_args(__doc__.splitlines()[0])
    duration, catch_up = (2.0, 2.0) if args.smoke else (10.0, 10.0)
    phases = [
        phase("no page, full speed", duration, False, catch_up),
        phase("page, full speed", duration, True, catch_up),
    ]
    if not args.smoke:  # informational: the example's own pace, and the page's best case
        phases.append(phase("page, paced 20 ms/step", duration, True, catch_up, delay=0.02))
        phases.append(
            phase("page, full speed, loss only", duration, True, catch_up, send=send_loss_only)
        )
    plain, paged = phases[0], phases[1]
    _common.report(
        "swissroll client (server is its own process; steps/s includes the final flush)",
        ("phase", "steps", "steps/s", "model ms/step", "calls ms/step", "flush s", "srv RSS MB",
         "srv peak MB", "cores: client", "server", "chromium"),
        [
            (
                r["label"],
                r["steps"],
                r["steps_per_s"],
                r["model_ms_per_step"],
                r["client_ms_per_step"],
                r["flush_seconds"],
                r["server_mb"]["VmRSS"],
                r["server_mb"]["VmHWM"],
                r["cores"]["client"],
                r["cores"]["server"],
                r["cores"]["chromium"],
            )
            for r in phases
        ],
    )  # fmt: skip
    print(f"cores: CPU seconds per second of the phase; this machine has {os.cpu_count()}")
    _common.report(
        "loss plot as the page sees it (signal: data arrived; frame: first animation frame "
        "holding it)",
        ("phase", "event", "updates/s", "latency p50 ms", "p99 ms", "max ms", "lag med",
         "lag max"),
        [
            (
                r["label"],
                kind,
                r[f"{kind}_updates_per_s"],
                r[f"{kind}_latency_ms"]["p50"],
                r[f"{kind}_latency_ms"]["p99"],
                r[f"{kind}_latency_ms"]["max"],
                r["lag_steps"]["median"],
                r["lag_steps"]["max"],
            )
            for r in phases[1:]
            for kind in ("signal", "frame")
        ],
    )  # fmt: skip
    print("lag: client step minus the step the page shows, sampled every 100 ms")
    for r in phases[1:]:
        print(f"{r['label']}: the page {catch_up_text(r)}")
    latency = paged["frame_latency_ms"]
    bound = "lower bound: steps unseen" if latency["lower_bound"] else ""
    peak = max(r["server_mb"]["VmHWM"] for r in phases)
    targets = [
        _common.target("swissroll steps/s, no page", plain["steps_per_s"], ">=", 300, "/s"),
        _common.target("swissroll steps/s, with a page", paged["steps_per_s"], ">=", 200, "/s"),
        _common.target("loss call-to-visible p50", latency["p50"], "<=", 100, "ms", bound),
        _common.target("loss call-to-visible p99", latency["p99"], "<=", 300, "ms", bound),
        _common.target(
            "page loss updates/s", paged["signal_updates_per_s"], ">=", 10, "/s", "data arrived"
        ),
        _common.target("server RSS (peak)", peak, "<", 300, "MB", "VmHWM of the server process"),
    ]
    _common.finish(
        args.out,
        "swissroll",
        targets,
        smoke=args.smoke,
        duration=duration,
        phases=phases,
        notes=[
            "server: python -m streamvis, a fresh process per phase (its working "
            "directory a temporary folder); RSS from /proc/PID/status (VmRSS at the end, "
            "VmHWM peak)",
            "latency: page Date.now() at the first animation frame holding step s minus "
            "the client's time.time() when it called tandem_lines for step s",
            "updates/s: new rows reaching the loss source in the page (its data replaced: "
            "every row, or a summary once the plot is long)",
            "targets use the full-speed phases; the paced phase (the example's own "
            "--delay 0.02) and the loss-only phase (the same loop calling only tandem_lines: "
            "the page's best case at full speed) are informational",
            "cores: CPU seconds per second of each phase, from /proc (client: this process)",
        ],
    )


if __name__ == "__main__":
    main()
