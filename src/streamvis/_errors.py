"""The exceptions streamvis raises.

    StreamvisError
    ├── ProtocolError          a frame on the wire is malformed
    │   ├── FrameTooLarge      it exceeds a size limit (an ArgumentError too, at a call)
    │   └── UnsupportedVersion it speaks another protocol version
    ├── ArgumentError          a call's arguments cannot make a plot (ValueError too)
    │   ├── ShapeError         the array's shape does not fit the call or the plot
    │   ├── DTypeError         the array's dtype is not a supported number type
    │   └── UnknownPlot        the plot name is not in the layout
    ├── ServerError            the server refused something this client sent
    ├── StoreError             a run's database could not be written or read (server side)
    └── ClientClosed           the client was used after close()

Each message names the offending value and says what to do about it.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "ClientClosed",
    "DTypeError",
    "FrameTooLarge",
    "ProtocolError",
    "ServerError",
    "ShapeError",
    "StoreError",
    "StreamvisError",
    "UnknownPlot",
    "UnsupportedVersion",
]


class StreamvisError(Exception):
    """Base class of every error streamvis raises on purpose."""


class ProtocolError(StreamvisError):
    """A frame is malformed: bad header, field, dtype, shape or length."""


class ArgumentError(StreamvisError, ValueError):
    """The arguments of a plotting call cannot make a plot."""


class FrameTooLarge(ProtocolError, ArgumentError):
    """A frame, its header or its array count exceeds a configured limit.

    Raised at a plotting call, it is the caller's argument that is too large: hence an
    ArgumentError as well.
    """


class UnsupportedVersion(ProtocolError):
    """A frame was written with a protocol version this side does not speak."""


class ShapeError(ArgumentError):
    """An array's shape does not fit the call (or the plot's existing data)."""


class DTypeError(ArgumentError):
    """An array's dtype is not one of the supported numeric dtypes."""


class UnknownPlot(ArgumentError):
    """A plot name is not part of the run's layout."""


class ServerError(StreamvisError):
    """The server refused something this client sent, or could not be used at all.

    ``seq`` is the refused frame's sequence number and ``plot`` its plot (None when the
    refusal is not about one frame); ``count`` is how often the same refusal was seen.
    """

    def __init__(self, message: str, *, seq: int | None = None, plot: str | None = None) -> None:
        super().__init__(message)
        self.seq, self.plot = seq, plot
        self.count = 1


class StoreError(StreamvisError):
    """A run's database could not be written or read; nothing of the write was kept."""


class ClientClosed(StreamvisError):
    """The client was used after close()."""
