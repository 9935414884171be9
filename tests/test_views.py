"""What a page holds of a big plot's image, and when an image must be drawn anew."""

from __future__ import annotations

from dataclasses import replace

from streamvis._page.views import holds
from streamvis._plots.raster import Viewport

FRAME = Viewport(x0=0.0, x1=10.0, y0=0.0, y1=5.0, width=373, height=293)


def test_an_image_a_few_pixels_off_its_frame_is_the_one_the_page_holds() -> None:
    """A step's new axis labels move a frame's edge by a few pixels: drawing and sending
    the image again for those (every image, every step, while playing) showed nothing new."""
    shown = (7, 100, FRAME)
    assert holds(shown, (7, 100, replace(FRAME, width=369)))  # shown stretched to it
    assert holds(shown, (7, 100, FRAME))
    assert not holds(shown, (7, 100, replace(FRAME, width=300)))  # resized: drawn anew
    assert not holds(shown, (7, 100, replace(FRAME, x1=11.0)))  # zoomed or panned
    assert not holds(shown, (8, 100, FRAME))  # a new frame of the plot
    assert not holds(shown, (7, 101, FRAME))  # rows appended
    assert not holds(None, (7, 100, FRAME))  # nothing drawn yet
