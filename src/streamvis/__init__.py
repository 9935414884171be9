"""streamvis: watch a running program's arrays as live, interactive Bokeh plots.

``from streamvis import Client`` imports neither tornado nor Bokeh's server and model
machinery; ``StreamvisServer``, ``read_run``, ``serve`` and ``show`` are imported on first
use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._client import Client
from ._errors import (
    ArgumentError,
    ClientClosed,
    DTypeError,
    FrameTooLarge,
    ProtocolError,
    ServerError,
    ShapeError,
    StreamvisError,
    UnknownPlot,
    UnsupportedVersion,
)
from ._specs import ColorSpec, GridSpec

if TYPE_CHECKING:
    from ._notebook import serve, show
    from ._readrun import read_run
    from ._server import StreamvisServer

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "Client",
    "ClientClosed",
    "ColorSpec",
    "DTypeError",
    "FrameTooLarge",
    "GridSpec",
    "ProtocolError",
    "ServerError",
    "ShapeError",
    "StreamvisError",
    "StreamvisServer",
    "UnknownPlot",
    "UnsupportedVersion",
    "read_run",
    "serve",
    "show",
]


def __getattr__(name: str) -> Any:
    if name == "StreamvisServer":
        from ._server import StreamvisServer

        return StreamvisServer
    if name == "read_run":
        from ._readrun import read_run

        return read_run
    if name in ("serve", "show"):
        from . import _notebook

        return getattr(_notebook, name)
    raise AttributeError(f"module 'streamvis' has no attribute {name!r}")
