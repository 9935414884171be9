"""Headless Chromium helper for browser tests of Bokeh pages (selenium, system chromium)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from streamvis._page.views import PIXEL_SLACK

TIMEOUT_SCALE = float(os.environ.get("STREAMVIS_TEST_TIMEOUT_SCALE", "1"))
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
POLL_INTERVAL = 0.05
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1400,1000",
)

# Every root with a view (not data models) has a view whose (recursive) has_finished() is true.
ALL_RENDERED_JS = """(() => {
  if (typeof Bokeh === "undefined" || Bokeh.documents.length === 0) return false;
  const roots = Bokeh.documents.flatMap((d) => d.roots()).filter((r) => r.default_view != null);
  const done = (r) => { const v = Bokeh.index.find_one(r); return v != null && v.has_finished(); };
  return roots.every(done);
})()"""

# Column arguments[1] of the ColumnDataSource named arguments[0] (a plain Array or a typed array).
COLUMN_JS = "Bokeh.documents[0].get_model_by_name(arguments[0]).data[arguments[1]]"
# Whether an image of w x h pixels is the one drawn for figure f's frame: its size, give or
# take views.PIXEL_SLACK (an image a few pixels off is shown stretched, not drawn again).
FITS_JS = (
    "const fits = (w, h, f) => [[w, f.inner_width], [h, f.inner_height]]"
    f".every(([a, b]) => Math.abs(a - b) <= {PIXEL_SLACK} * b);"
)

# Line arguments[1] of the line plot named arguments[0] (one row per line): [x, y] as arrays.
LINE_JS = """
const d = Bokeh.documents[0].get_model_by_name(arguments[0]).data;
return [Array.from(d.xs[arguments[1]]), Array.from(d.ys[arguments[1]])];
"""
# The number of points of the first line of the line plot named arguments[0].
LINE_LENGTH_JS = "Bokeh.documents[0].get_model_by_name(arguments[0]).data.xs[0].length"

# [left, top, width, height] in viewport CSS px of the data frame of the plot named arguments[0].
FRAME_JS = """
const v = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(arguments[0]));
const r = v.el.getBoundingClientRect(), b = v.frame.bbox;
return [r.left + b.left, r.top + b.top, b.width, b.height];
"""


def find_chromium() -> tuple[str, str] | None:
    """Return (chromium, chromedriver) paths when both are installed, else None."""
    if Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file():
        return CHROMIUM, CHROMEDRIVER
    return None


def scaled(timeout: float) -> float:
    """Apply the global STREAMVIS_TEST_TIMEOUT_SCALE to a timeout in seconds."""
    return timeout * TIMEOUT_SCALE


class Page:
    """One headless Chromium session driven through selenium."""

    def __init__(self, timeout: float = 20.0) -> None:
        """Start the browser (RuntimeError when chromium or chromedriver is missing)."""
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        paths = find_chromium()
        if paths is None:
            raise RuntimeError(f"browser tests need {CHROMIUM} and {CHROMEDRIVER}")
        os.environ["SE_AVOID_STATS"] = "true"  # no Selenium Manager telemetry
        os.environ["SE_OFFLINE"] = "true"  # and no downloads, should it ever run
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="streamvis-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = paths[0]
        for flag in (*CHROME_FLAGS, f"--user-data-dir={self._profile}"):
            options.add_argument(flag)
        try:
            # An explicit driver path makes selenium skip Selenium Manager entirely.
            self.driver = webdriver.Chrome(service=Service(paths[1]), options=options)
            self.driver.set_page_load_timeout(scaled(timeout))
            self.driver.set_script_timeout(scaled(timeout))
        except BaseException:
            shutil.rmtree(self._profile, ignore_errors=True)
            raise

    def __enter__(self) -> Page:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Quit the browser and delete its temporary profile."""
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)

    def open(self, url: str) -> None:
        """Navigate to url (returns once the HTML has loaded, not the Bokeh document)."""
        self.driver.get(url)

    def reload(self) -> None:
        """Reload the current page (a Bokeh server then opens a new session)."""
        self.driver.refresh()

    def js(self, script: str, *args: Any) -> Any:
        """Run a JS function body (use `return`) with arguments[0..] and return its value."""
        return self.driver.execute_script(script, *args)

    def wait_for(self, expression: str, *args: Any, timeout: float | None = None) -> Any:
        """Poll a JS expression (may use arguments[i]) until truthy; return it or TimeoutError."""
        limit = scaled(self.timeout if timeout is None else timeout)
        deadline = time.monotonic() + limit
        last: Any = None
        for _ in range(int(limit / POLL_INTERVAL) + 2):
            try:
                last = self.js(f"return ({expression});", *args)
            except Exception as exc:  # page not loaded yet, model missing, ...
                last = f"JS error: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
            else:
                if last:
                    return last
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_INTERVAL)
        raise TimeoutError(f"after {limit:.1f}s `{expression}` is still falsy; last: {last!r}")

    def all_rendered(self, timeout: float | None = None) -> None:
        """Wait until every displayable root of the Bokeh document has finished rendering."""
        self.wait_for(ALL_RENDERED_JS, timeout=timeout)

    def column(self, name: str, column: str) -> list[float]:
        """Return a column of the data source named `name` as a plain list."""
        return list(self.js(f"return Array.from({COLUMN_JS});", name, column))

    def wait_for_column_length(
        self, name: str, column: str, n: int, timeout: float | None = None
    ) -> list[float]:
        """Wait until the named source's column has exactly n values and return them."""
        self.wait_for(f"{COLUMN_JS}.length === arguments[2]", name, column, n, timeout=timeout)
        return self.column(name, column)

    def line(self, name: str, k: int) -> tuple[list[float], list[float]]:
        """Return x and y of line ``k`` of the line plot named ``name``."""
        x, y = self.js(LINE_JS, name, k)
        return list(x), list(y)

    def wait_for_line_length(self, name: str, n: int, timeout: float | None = None) -> list[float]:
        """Wait until the named line plot's lines have exactly n points; return their x."""
        self.wait_for(f"{LINE_LENGTH_JS} === arguments[1]", name, n, timeout=timeout)
        return self.line(name, 0)[0]

    def frame_rect(self, name: str) -> tuple[float, float, float, float]:
        """Return (left, top, width, height) in viewport CSS px of the named plot's data frame."""
        left, top, width, height = self.js(FRAME_JS, name)
        return float(left), float(top), float(width), float(height)

    def screenshot_png(self) -> bytes:
        """Return a PNG screenshot of the viewport (CSS px == image px at devicePixelRatio 1)."""
        return self.driver.get_screenshot_as_png()
