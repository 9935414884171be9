"""The seed's dashboard, run against a real server and read back from a real page."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

import swissroll  # type: ignore[import-not-found]  # examples/, on the path in conftest
from browser import FITS_JS, LINE_LENGTH_JS, Page
from streamvis import Client
from streamvis._plots.raster import Viewport, packed_rgba, rasterize, rasterize_segments
from streamvis._server import StreamvisServer
from streamvis._specs import resolve_palette
from test_durability import free_port

STEPS = 12
# The image of plot arguments[0] once drawn for the page's pixel size, with the view it shows.
IMAGE_JS = """(() => {
  const doc = Bokeh.documents[0];
  const d = doc.get_model_by_name(arguments[0]).data;
  const f = doc.get_model_by_name(arguments[0] + ":figure");
  const image = d.image && d.image[0];
  FITS
  if (!image || !fits(image.shape[1], image.shape[0], f)) return null;
  return {x: [d.x[0], d.x[0] + d.dw[0]], y: [d.y[0], d.y[0] + d.dh[0]],
          pixels: [image.shape[1], image.shape[0]], image: Array.from(image)};
})()""".replace("FITS", FITS_JS)
EXAMPLES = Path(__file__).parent.parent / "examples"


def expected_last_arrays() -> dict[str, np.ndarray]:
    model = swissroll.Synthetic()  # the same calls, in the same order, as swissroll.run
    for step in range(STEPS):
        arrays = model.step(step)
        if step == 0:
            samples = model.samples()
    return {**arrays, "psamples": samples}


def grid_xy(
    points: np.ndarray, cells: np.ndarray, all_points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where points (N, 2) of grid cells (N,) go, 8 columns, padding 1.2 of the data's extent."""
    ext = all_points.max(axis=0) - all_points.min(axis=0)
    return points[:, 0] + (cells % 8) * 1.2 * ext[0], points[:, 1] - (cells // 8) * 1.2 * ext[1]


def shown_image(page: Page, name: str) -> tuple[Viewport, np.ndarray]:
    """The view and pixels of plot ``name``, once drawn for the page's frame."""
    shown = page.wait_for(IMAGE_JS, name)
    view = Viewport(*shown["x"], *shown["y"], *shown["pixels"])
    return view, np.array(shown["image"], np.uint32).reshape(view.height, view.width)


def pixel(view: Viewport, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (row, column) of the pixels that hold data points (x, y) in an image of ``view``."""
    column = np.floor((x - view.x0) / (view.x1 - view.x0) * view.width).astype(int)
    row = np.floor((y - view.y0) / (view.y1 - view.y0) * view.height).astype(int)
    return row, column


def test_swissroll_dashboard(
    server: StreamvisServer, connect: Callable[..., Client], browser: Callable[[], Page]
) -> None:
    client = connect("swissroll")
    page = browser()
    page.open(f"http://127.0.0.1:{server.bokeh_port}/?run=swissroll")
    swissroll.run(client, STEPS, model=swissroll.Synthetic())
    assert client.flush(timeout=30)
    expected = expected_last_arrays()

    assert page.wait_for_line_length("loss", STEPS, timeout=30) == list(range(STEPS))
    loss = np.array([page.line("loss", k)[1][-1] for k in range(40)], np.float32)
    np.testing.assert_allclose(loss, expected["loss"], rtol=1e-6)
    assert (
        page.wait_for_column_length("rbf_centers", "x", 16)
        == expected["rbf_centers"][:, 0].tolist()
    )

    for name in ("mu_alphas", "sigma_alphas"):
        page.wait_for_column_length(name, "x", 40 * 16)
        assert page.column(name, "c") == [i // 16 for i in range(640)]  # colored by axis 0
        np.testing.assert_allclose(
            page.column(name, "y"), expected[name][..., 1].ravel(), rtol=1e-6
        )

    palette = packed_rgba(resolve_palette("Viridis256"))
    # (batch 400, timestep 40, spatial 2, points 2): 16000 two-point lines, so an image
    mu = expected["mu"]
    view, image = shown_image(page, "mu")
    starts, ends = mu[..., 0].reshape(-1, 2), mu[..., 1].reshape(-1, 2)
    cells = np.tile(np.arange(40), 400)  # line (b, t) is row b * 40 + t, in cell t
    all_points = np.moveaxis(mu, 2, -1).reshape(-1, 2)
    x0, y0 = grid_xy(starts, cells, all_points)
    x1, y1 = grid_xy(ends, cells, all_points)
    assert image[pixel(view, x0, y0)].all()  # every line is drawn where the grid puts it
    f32 = [v.astype(np.float32) for v in (x0, y0, x1, y1)]
    blue = packed_rgba(["#1f77b4"])  # uncolored plots take Bokeh's first default color
    np.testing.assert_array_equal(
        image, rasterize_segments(f32[0], f32[1], f32[2], f32[3], view, blue)
    )

    # (1000, 41, 2), colored and gridded by axis 1: 41k points, so an image too
    samples = expected["psamples"]
    view, image = shown_image(page, "psamples")
    cells = np.tile(np.arange(41), 1000)
    x, y = grid_xy(samples.reshape(-1, 2), cells, samples.reshape(-1, 2))
    assert image[pixel(view, x, y)].all()  # every sample is drawn where the grid puts it
    f32 = [v.astype(np.float32) for v in (x, y)]
    np.testing.assert_array_equal(image, rasterize(f32[0], f32[1], view, palette, cells, 41))

    page.all_rendered()
    shot = Image.open(io.BytesIO(page.screenshot_png())).convert("RGB")
    for name in swissroll.LAYOUT:
        left, top, width, height = page.frame_rect(f"{name}:figure")
        crop = np.asarray(
            shot.crop((int(left), int(top), int(left + width), int(top + height))), np.int16
        )
        colorful = (
            crop.max(axis=2) - crop.min(axis=2)
        ) > 60  # glyphs, not white or grey grid lines
        assert colorful.sum() > 200, f"plot {name!r} looks blank: {colorful.sum()} colored pixels"


def test_make_demo_prints_a_url_where_plots_update(browser: Callable[[], Page]) -> None:
    rest, bokeh = free_port(), free_port()
    demo = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "demo.py"),
            "--rest_port",
            str(rest),
            "--bokeh_port",
            str(bokeh),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        assert demo.stdout is not None
        for _ in range(20):  # the server prints its own line first, then the demo's
            line = demo.stdout.readline()
            if "streamvis demo: open" in line:
                url = line.split("open ")[1].split()[0]
                break
        assert url == f"http://localhost:{bokeh}/"
        page = browser()
        page.open(url)
        seen = page.wait_for(LINE_LENGTH_JS, "loss")
        page.wait_for(f"{LINE_LENGTH_JS} > arguments[1]", "loss", seen)
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0


def test_the_example_trains_a_real_model_that_learns_the_swiss_roll() -> None:
    model = swissroll.Diffusion()
    rng = np.random.default_rng(1)
    roll = swissroll.swissroll(4000, rng)

    def miss() -> float:  # how far samples drawn from noise land from the roll, on average
        drawn = model.samples()[:, -1]
        return float(np.sqrt(((drawn[:, None] - roll[None]) ** 2).sum(-1).min(1)).mean())

    first = model.step(0)
    for step in range(1, 600):
        last = model.step(step)
    assert last["loss"].mean() < 0.7 * first["loss"].mean()
    gaussian = np.sqrt(((rng.normal(size=(1000, 1, 2)) - roll[None]) ** 2).sum(-1).min(1)).mean()
    assert miss() < gaussian  # closer than noise itself: it learned the shape
    assert last["mu"].shape == (400, 40, 2, 2) and last["mu_alphas"].shape == (40, 32, 2)
