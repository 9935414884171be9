"""streamvis: watch a running program's arrays as live, interactive Bokeh plots.

``from streamvis import Client`` imports neither tornado nor Bokeh's server and model
machinery; ``StreamvisServer`` is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .client import Client
from .errors import (
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
from .specs import ColorSpec, GridSpec

if TYPE_CHECKING:
    from .server import StreamvisServer

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
]


def __getattr__(name: str) -> Any:
    if name == "StreamvisServer":
        from .server import StreamvisServer

        return StreamvisServer
    raise AttributeError(f"module 'streamvis' has no attribute {name!r}")
