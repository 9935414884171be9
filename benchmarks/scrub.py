"""Moving a page through a run's history: the swissroll dashboard at a step, from the store.

Issue #15's targets: scrubbing the swissroll dashboard (six plots, two of them images) from
one step to another, slider change to painted p50 <= 100 ms, p99 <= 250 ms; playing at
>= 10 steps/s with every plot in step.

The server runs as its own process, persisting. The swissroll stand-in
(``examples/swissroll.py --synthetic``) sends its steps, each replace plot's x shifted by
``step * OFFSET`` so that a page's data says which step it shows (an image's by its
bounds). Headless Chromium opens the run at a step, then moves the slider to random steps
the way a drag does, timing from the change to the animation frame after every replace plot
shows that step. Then it plays at 10 steps/s and samples, every animation frame, whether all
plots show one step. Beside them, in the same run: the live page's call-to-visible time of
a new step (the page's own pace, with nothing read from the store).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np

import _common
from browser import Page
from streamvis import Client

swissroll = _common.load_example("swissroll")
RUN = "swissroll"
OFFSET = 10_000.0  # x of step K's frames: K * OFFSET + the data's own (within +-200: any
# one point says the step; reading them all every animation frame cost the page its time)
PLOTS = ("rbf_centers", "mu_alphas", "sigma_alphas", "mu", "psamples")  # the replace plots
# The step each replace plot shows (null until it has data), read from its page data.
STEPS_JS = f"""
const doc = Bokeh.documents[0];
const steps = {{}};
for (const name of {list(PLOTS)!r}) {{
  const s = doc && doc.get_model_by_name(name);
  const d = s && s.data;
  let low = null;
  if (d && d.left && d.left.length) low = d.left[0];
  else if (d && (d.x || d.x0) && (d.x || d.x0).length) low = (d.x || d.x0)[0];  // any one
  steps[name] = low === null ? null : Math.round(low / {OFFSET});
}}
"""
# Move the slider as a drag does; call back with the ms until the frame after every plot
# shows step arguments[0] (psamples: arguments[1], it is sent every 100 steps).
MOVE_JS = (
    """
const [step, samples, done] = arguments;
const slider = Bokeh.documents[0].get_model_by_name('streamvis:step');
const start = performance.now();
slider.value = step; slider.value_throttled = step;
function shows() {"""
    + STEPS_JS
    + """  const want = (name) => (name === 'psamples' ? samples : step);
  const all = Object.entries(steps).every(([name, shown]) => shown === want(name));
  return all && !window.streamvis_held;  // held: the plots still show what they painted
}
function check() {
  if (performance.now() - start > 30000) done(null);
  else if (shows()) requestAnimationFrame(() => done(performance.now() - start));
  else requestAnimationFrame(check);
}
requestAnimationFrame(check);
"""
)
# Play for arguments[0] ms at 10 steps/s; call back with, per animation frame, the slider's
# step and whether every plot but psamples showed it.
PLAY_JS = (
    """
const [ms, done] = arguments;
const doc = Bokeh.documents[0];
doc.get_model_by_name('streamvis:speed').value = '10';
doc.get_model_by_name('streamvis:play').active = true;
const start = performance.now(), samples = [];
let painted = null;
function sample() {"""
    + STEPS_JS
    + """  const slider = doc.get_model_by_name('streamvis:step').value;
  const shown = Object.entries(steps).filter(([n]) => n !== 'psamples').map(([, s]) => s);
  // While the page holds its plot views (a step's update on its way), they show what they
  // painted last.
  if (!window.streamvis_held || painted === null)
    painted = [shown.every((s) => s === shown[0]), shown[0]];
  samples.push([slider, ...painted, performance.now() - start]);
  if (performance.now() - start < ms) requestAnimationFrame(sample);
  else { doc.get_model_by_name('streamvis:play').active = false; done(samples); }
}
requestAnimationFrame(sample);
"""
)


def shifted(arrays: dict[str, np.ndarray], step: int) -> dict[str, np.ndarray]:
    """The stand-in's arrays with every replace plot's x moved to step * OFFSET."""
    out = dict(arrays)
    for name in ("rbf_centers", "mu_alphas", "sigma_alphas"):
        out[name] = arrays[name].copy()
        out[name][..., 0] += step * OFFSET
    out["mu"] = arrays["mu"].copy()
    out["mu"][:, :, 0, :] += step * OFFSET
    return out


class Shifted:
    """The stand-in model, its x moved by step (psamples too, by the step they are sent at)."""

    def __init__(self) -> None:
        self.model = swissroll.Synthetic()
        self.at = 0

    def step(self, step: int) -> dict[str, np.ndarray]:
        self.at = step
        return shifted(self.model.step(step), step)

    def samples(self) -> np.ndarray:
        samples = np.array(self.model.samples())
        samples[..., 0] += self.at * OFFSET
        return samples


def fill(client: Client, steps: int) -> float:
    """Send ``steps`` steps, each acknowledged before the next (every one kept)."""
    client.set_layout(swissroll.LAYOUT)
    model, start = Shifted(), time.perf_counter()
    for step in range(steps):
        swissroll.send_step(client, model, step, model.step(step))
        if not client.flush(timeout=60):
            raise RuntimeError(f"step {step} was not acknowledged within 60 s")
    return time.perf_counter() - start


# The (height, width) of the streamvis page's mu image: the bare page's images are that size.
IMAGE_JS = "return Bokeh.documents[0].get_model_by_name('mu').data.image[0].shape;"


def bare_page(visits: list[int], steps: int, image: tuple[int, int]) -> Any:
    """A bare Bokeh app (no streamvis) of the swissroll dashboard's figures at a step: the
    stand-in's arrays, shifted as :func:`shifted` does, and images of the streamvis page's
    size, all made beforehand for the steps ``visits`` moves to; a slider named as
    streamvis's, whose move assigns that step's data (and moves the loss plot's cursor)."""
    from bokeh.layouts import column, gridplot
    from bokeh.models import ColumnDataSource, Span
    from bokeh.models.widgets import Slider
    from bokeh.palettes import Viridis256
    from bokeh.plotting import figure
    from bokeh.transform import linear_cmap

    model, rng = Shifted(), np.random.default_rng(1)
    h, w = image

    def picture(at: int) -> dict[str, Any]:  # an image as streamvis sends one (its bounds too)
        pixels = rng.integers(0, 1 << 32, (h, w), dtype=np.uint32) & np.uint32(0xFF7F7F7F)
        box = dict(x=[at * OFFSET - 3], y=[-40.0], dw=[60.0], dh=[44.0])
        return dict(image=[pixels], left=[at * OFFSET - 3], **box)

    def points(xy: np.ndarray, by: int | None) -> dict[str, Any]:
        flat = xy.reshape(-1, 2)
        c = np.indices(xy.shape[:-1])[by].ravel() if by is not None else np.zeros(len(flat))
        return dict(x=flat[:, 0].copy(), y=flat[:, 1].copy(), c=c.astype(np.float64))

    frames, samples = {}, {}
    for step in sorted(set(visits)):
        arrays = model.step(step)
        frames[step] = dict(
            rbf_centers=points(arrays["rbf_centers"], None),
            mu_alphas=points(arrays["mu_alphas"], 0),
            sigma_alphas=points(arrays["sigma_alphas"], 0),
            mu=picture(step),
            psamples=samples.get(step // 100) or picture(step // 100 * 100),
        )
        samples[step // 100] = frames[step]["psamples"]
    losses = np.cumsum(rng.standard_normal((steps, 40)), 0).astype(np.float32)
    loss = dict(xs=[np.arange(steps, dtype=np.float32)] * 40, ys=list(losses.T),
                c=np.arange(40, dtype=np.int32))  # fmt: skip

    def make(doc: Any) -> None:
        first = frames[visits[0]]
        sources = {name: ColumnDataSource(first[name], name=name) for name in first}
        figs: dict[str, Any] = {}
        for name in swissroll.LAYOUT:
            figs[name] = fig = figure(width=440, height=340, title=name)
            if name in ("mu", "psamples"):
                fig.image_rgba(image="image", x="x", y="y", dw="dw", dh="dh", source=sources[name])
            elif name != "loss":
                color = linear_cmap("c", Viridis256, 0, 40)
                fig.scatter("x", "y", source=sources[name], size=5, fill_color=color,
                            line_color=None, fill_alpha=0.8)  # fmt: skip
        colors = linear_cmap("c", Viridis256, 0, 39)
        figs["loss"].multi_line("xs", "ys", source=ColumnDataSource(loss), line_color=colors)
        cursor = Span(location=visits[0], dimension="height")
        figs["loss"].add_layout(cursor)
        slider = Slider(start=0, end=steps - 1, value=visits[0], step=1, name="streamvis:step")

        shown = dict(first)

        def moved(attr: str, old: Any, new: Any) -> None:
            for name, data in frames[int(new)].items():
                if shown[name] is not data:  # the samples: a frame every 100 steps
                    sources[name].data = shown[name] = data
            cursor.location = int(new)

        slider.on_change("value_throttled", moved)
        grid = [[None] * 3 for _ in range(2)]
        for name, (r, c, _, _) in swissroll.LAYOUT.items():
            grid[r][c] = figs[name]
        doc.add_root(column(slider, gridplot(grid, toolbar_location=None)))

    return make


def moves(page: Page, visits: list[int]) -> list[float]:
    """Move the page's slider to each step of ``visits``: ms from each move to painted."""
    out = []
    for step in visits:
        ms = page.driver.execute_async_script(MOVE_JS, step, step // 100 * 100)
        if ms is None:
            raise RuntimeError(f"the page did not show step {step} within 30 s")
        out.append(float(ms))
    return out


def bare(visits: list[int], steps: int, image: tuple[int, int]) -> list[float]:
    """The bare Bokeh page's slider-to-painted times over the same moves."""
    with _common.bokeh_app(bare_page(visits, steps, image)) as port, Page(timeout=60) as page:
        page.open(f"http://127.0.0.1:{port}/")
        page.wait_for("Bokeh.documents[0]?.get_model_by_name('streamvis:step') != null")
        page.all_rendered()
        moves(page, visits[:1])  # as the streamvis page: its first move is not timed
        return moves(page, visits[1:])


def main() -> None:
    """Fill the history, scrub, play, and the live baseline; print and save."""
    args = _common.parse_args(__doc__.splitlines()[0])
    steps, count, play_ms = (200, 8, 2000) if args.smoke else (1000, 40, 5000)
    rng = np.random.default_rng(0)
    with _common.ServerProcess(RUN) as server, Page(timeout=60) as page:
        client = Client(server.address, RUN, exit_timeout=30)
        try:
            fill_s = fill(client, steps)
            start = steps // 2
            page.open(f"http://127.0.0.1:{server.bokeh_port}/?run={RUN}&step={start}")
            page.wait_for("Bokeh.documents[0]?.get_model_by_name('streamvis:step') != null")
            opened = page.driver.execute_async_script(MOVE_JS, start, start // 100 * 100)
            visits = [start] + [int(rng.integers(0, steps)) for _ in range(count)]
            scrub = moves(page, visits[1:])
            shape = page.js(IMAGE_JS)
            page.js(f"Bokeh.documents[0].get_model_by_name('streamvis:step').value = {0};")
            played = page.driver.execute_async_script(PLAY_JS, play_ms)
            live = live_baseline(page, client, steps)
        finally:
            client.close(timeout=30)
    limit = bare(visits, steps, (int(shape[0]), int(shape[1])))
    in_step = float(np.mean([s[1] for s in played])) if played else float("nan")
    # Steps a second the plots showed: distinct steps painted, over the time between the
    # first and the last sample that showed a new one (the slider's own pace is the page's).
    changes = [(s[3], s[2]) for a, s in itertools.pairwise(played) if s[2] != a[2]]
    advanced = float("nan")
    if len(changes) > 1:
        advanced = (len(changes) - 1) / ((changes[-1][0] - changes[0][0]) / 1000)
    ms = np.array(scrub)
    p50, p99 = _common.percentile(ms, 50), _common.percentile(ms, 99)
    bare_ms = np.array(limit)
    bare_p50 = _common.percentile(bare_ms, 50)
    _common.report(
        f"scrubbing {steps} stored steps of the swissroll dashboard: slider to painted",
        ("page", "moves", "p50 ms", "p99 ms", "max ms", "first show ms", "live p50 ms"),
        [("streamvis", len(ms), p50, p99, float(ms.max()), opened, live["p50_ms"]),
         ("bare Bokeh, pre-made data", len(bare_ms), bare_p50, _common.percentile(bare_ms, 99),
          float(bare_ms.max()), "", "")],
    )  # fmt: skip
    _common.report(
        "playing at 10 steps/s",
        ("seconds", "steps shown/s", "frames with every plot in step"),
        [(play_ms / 1000, advanced, in_step)],
    )
    detail = f"{len(ms)} moves over {steps} steps; bare Bokeh p50 {bare_p50:.0f} ms"
    targets = [
        _common.target("scrub to painted p50", p50, "<=", 100, "ms", detail),
        _common.target("scrub to painted p99", p99, "<=", 250, "ms", detail),
        _common.target("playing: steps shown/s", advanced, ">=", 10, "/s", f"{in_step:.0%} in"),
        _common.target("playing: frames in step", in_step * 100, ">=", 95, "%", ""),
    ]
    notes = [
        "server: python -m streamvis, its own process, persisting; stand-in swissroll steps",
        "each acknowledged before the next (every step kept); x shifted by step * 10,000 so "
        "the page's data says which step it shows",
        "scrub: slider value and value_throttled set as a drag sets them, timed in the page "
        "to the animation frame after every replace plot shows the step",
        "live: the same page back in live mode, a new step sent, until it is shown",
        "bare Bokeh: the same six figures (plain bokeh.plotting, the same sizes and glyphs), "
        "each step's data made beforehand and assigned on the slider's move, timed the same",
    ]
    _common.finish(
        args.out, "scrub", targets, steps=steps, fill_seconds=fill_s, scrub_ms=scrub,
        opened_ms=opened, played=played, live=live, bare_ms=limit, notes=notes,
    )  # fmt: skip


def live_baseline(page: Page, client: Client, steps: int) -> dict[str, Any]:
    """The page back in live mode: ms from sending a new step to the page showing it."""
    page.js("Bokeh.documents[0].get_model_by_name('streamvis:live').active = true;")
    model, out = Shifted(), []
    for step in range(steps, steps + 10):
        start = time.perf_counter()
        swissroll.send_step(client, model, step, model.step(step))
        client.flush(timeout=30)
        page.wait_for(
            f"(() => {{ {STEPS_JS} return steps.rbf_centers === arguments[0]; }})()", step
        )
        out.append((time.perf_counter() - start) * 1000)
    return {"ms": out, "p50_ms": _common.percentile(np.array(out), 50)}


if __name__ == "__main__":
    main()
