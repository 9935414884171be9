"""The exceptions streamvis raises.

    StreamvisError
    ├── ProtocolError          a frame on the wire is malformed
    │   ├── FrameTooLarge      it exceeds a size limit
    │   └── UnsupportedVersion it speaks another protocol version
    ├── ArgumentError          a call's arguments cannot make a plot (ValueError too)
    │   ├── ShapeError         the array's shape does not fit the call or the plot
    │   ├── DTypeError         the array's dtype is not a supported number type
    │   └── UnknownPlot        the plot name is not in the layout
    ├── ServerError            the server rejected something this client sent
    └── ClientClosed           the client was used after close()

Each message names the offending value and says what to do about it.
"""

from __future__ import annotations


class StreamvisError(Exception):
    """Base class of every error streamvis raises on purpose."""


class ProtocolError(StreamvisError):
    """A frame is malformed: bad header, field, dtype, shape or length."""


class FrameTooLarge(ProtocolError):
    """A frame, its header or its array count exceeds a configured limit."""


class UnsupportedVersion(ProtocolError):
    """A frame was written with a protocol version this side does not speak."""


class ArgumentError(StreamvisError, ValueError):
    """The arguments of a plotting call cannot make a plot."""


class ShapeError(ArgumentError):
    """An array's shape does not fit the call (or the plot's existing data)."""


class DTypeError(ArgumentError):
    """An array's dtype is not one of the supported numeric dtypes."""


class UnknownPlot(ArgumentError):
    """A plot name is not part of the run's layout."""


class ServerError(StreamvisError):
    """The server rejected a frame; the message is the server's explanation."""


class ClientClosed(StreamvisError):
    """The client was used after close()."""
