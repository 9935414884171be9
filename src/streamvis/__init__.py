"""streamvis: watch a running program's arrays as live, interactive Bokeh plots.

``from streamvis import Client`` imports neither tornado nor Bokeh's server and model
machinery; ``StreamvisServer`` is imported on first use.
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
]


def __getattr__(name: str) -> Any:
    if name == "StreamvisServer":
        from ._server import StreamvisServer

        return StreamvisServer
    raise AttributeError(f"module 'streamvis' has no attribute {name!r}")
