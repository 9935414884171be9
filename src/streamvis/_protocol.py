"""The wire format: frames in, replies out. Pure functions of bytes, no I/O.

A frame is one websocket message::

    uint32 big-endian H | H bytes of msgpack header | zero padding to 8 | array buffers

The header is a map: ``v`` (protocol version), ``op``, ``run``, ``cid`` (client id), ``seq``
(the client's sequence number), ``ack`` (reply with an acknowledgement), ``restore`` (the
client restores what the server lost, see below), ``name`` and ``opts`` for plot operations,
and ``arrays``: per array ``[dtype, shape]``. Each buffer is the array's
C-ordered little-endian bytes, padded to a multiple of 8, so the decoder returns zero-copy
``np.frombuffer`` views.

Replies from the server are msgpack maps: ``{"ack": seq}`` once every frame up to ``seq`` is
applied, and ``{"err": message, "seq": seq, "name": plot}`` when a frame is rejected. A
rejection with ``"code": "unplaced"`` means the plot has no place in the run's layout any more
(the run was deleted, cleared or laid out anew by someone else): the server then ignores that
client's frames from ``seq`` on, unacknowledged, until one arrives marked ``restore``, and the
client resends them after its own layout, so nothing is lost and nothing is applied twice.
``"code": "unstored"`` means the same for frames the server could not store (a full disk):
the client resends them, marked ``restore``, after a pause. A client says it can do both
with the handshake header ``X-Streamvis-Restores: 1``; others are refused as before.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

import msgpack
import numpy as np

from ._errors import ArgumentError, FrameTooLarge, ProtocolError, UnsupportedVersion

__all__ = [
    "DEFAULT_LIMITS",
    "DTYPES",
    "INGEST_PATH",
    "INGEST_PORT_HEADER",
    "MAX_FRAME_HEADER",
    "OPS",
    "RESTORES_HEADER",
    "TRUSTED_LIMITS",
    "UNPLACED",
    "UNSTORED",
    "VERSION",
    "WIRE_DTYPES",
    "BadFrame",
    "Frame",
    "Limits",
    "Op",
    "check_name",
    "decode",
    "decode_many",
    "decode_reply",
    "encode",
    "encode_head",
    "encode_reply",
    "is_name",
    "made_at",
    "padded",
]

VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")


def is_name(name: object) -> TypeGuard[str]:
    """Whether ``name`` is a valid run or plot name."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def made_at(opts: Mapping[str, Any]) -> float | None:
    """When a frame was made, by its client's clock (seconds since the epoch), if it says
    so plausibly (a number, finite, after 1970 and before the year 5000)."""
    made = opts.get("time")
    if isinstance(made, float | int) and type(made) is not bool and 0 < made < 1e11:
        return float(made)  # NaN fails the comparison
    return None


def check_name(name: object, what: str) -> str:
    """Return ``name`` if it is a valid run or plot name, else raise ArgumentError."""
    if not is_name(name):
        raise ArgumentError(
            f"{what} {name!r} is not a valid name: use 1 to 64 letters, digits, '_', '.' or '-', "
            "not starting with '.' or '-'"
        )
    return name


Op = Literal["layout", "plot", "clear", "sync"]
OPS: tuple[Op, ...] = ("layout", "plot", "clear", "sync")

# Wire dtype names and their little-endian numpy dtypes (looked up per array of every frame).
WIRE_DTYPES = {
    name: np.dtype(name).newbyteorder("<")
    for name in [f"{kind}{bits}" for kind in ("int", "uint") for bits in (8, 16, 32, 64)]
    + ["float16", "float32", "float64"]
}
DTYPES = frozenset(WIRE_DTYPES)
_WIRE_NAMES = {dtype: name for name, dtype in WIRE_DTYPES.items()}  # dtype.name is slow
MAX_FRAME_HEADER = "X-Streamvis-Max-Frame"  # handshake header: the server's frame limit
INGEST_PATH = "/ingest"  # where clients connect, on the ingest port
RESTORES_HEADER = "X-Streamvis-Restores"  # handshake header: "1" if the client can restore
INGEST_PORT_HEADER = "X-Streamvis-Ingest-Port"  # the page port's answer to a lost client
UNPLACED = "unplaced"  # a reply's code: the plot lost its place; resend from seq, restored
UNSTORED = "unstored"  # a reply's code: not stored; resend from seq, marked restore, later
_PREFIX = struct.Struct(">I")
_ALIGN = 8


@dataclass(frozen=True)
class Limits:
    """Size limits a decoder enforces; the server passes ``max_frame_bytes`` to websockets."""

    max_frame_bytes: int = 256 * 2**20
    max_header_bytes: int = 64 * 2**10
    max_arrays: int = 8
    max_ndim: int = 16


DEFAULT_LIMITS = Limits()


# Stored and resent frames were accepted (or made) under whatever limits held then.
TRUSTED_LIMITS = Limits(max_frame_bytes=2**62, max_header_bytes=2**30, max_arrays=2**16)


@dataclass(frozen=True)
class Frame:
    """One decoded client message."""

    op: Op
    run: str
    cid: str
    seq: int
    name: str | None = None
    opts: Mapping[str, Any] = field(default_factory=dict)
    arrays: tuple[np.ndarray, ...] = ()
    ack: bool = False
    restore: bool = False


@dataclass(frozen=True)
class BadFrame:
    """A frame of a message that was refused; ``seq`` is its number when it could be read.

    ``last`` says the frame's end could not be found, so nothing after it was read.
    """

    error: ProtocolError
    seq: int | None = None
    last: bool = False


def _pad(n: int) -> int:
    return -n % _ALIGN


def padded(nbytes: int) -> int:
    """The bytes an array of ``nbytes`` takes in a frame, with its padding."""
    return nbytes + _pad(nbytes)


def encode(frame: Frame) -> bytes:
    """Serialize ``frame``; its arrays must be C-ordered and little-endian, of a wire dtype."""
    parts: list[bytes | memoryview] = [encode_head(frame)]
    for array in frame.arrays:
        parts.append(array.data.cast("B") if array.size else b"")
        parts.append(b"\0" * _pad(array.nbytes))
    return b"".join(parts)


def encode_head(frame: Frame) -> bytes:
    """The bytes of ``frame`` before its arrays: length prefix, header and padding.

    The arrays follow as :func:`encode` lays them out, so a sender that keeps them in one
    buffer can send the head and that buffer without joining them.
    """
    header: dict[str, Any] = {
        "v": VERSION,
        "op": frame.op,
        "run": frame.run,
        "cid": frame.cid,
        "seq": frame.seq,
    }
    if frame.ack:
        header["ack"] = True
    if frame.restore:
        header["restore"] = True
    if frame.name is not None:
        header["name"] = frame.name
    if frame.opts:
        header["opts"] = dict(frame.opts)
    if frame.arrays:
        header["arrays"] = [[_WIRE_NAMES[a.dtype], list(a.shape)] for a in frame.arrays]
    packed = msgpack.packb(header, use_bin_type=True)
    return b"".join((_PREFIX.pack(len(packed)), packed, b"\0" * _pad(_PREFIX.size + len(packed))))


def _field(header: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = header.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ProtocolError(f"header field {key!r} is {value!r}; expected {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _array_specs(
    header: Mapping[str, Any], limits: Limits
) -> list[tuple[np.dtype[Any], tuple[int, ...]]]:
    raw = header.get("arrays", [])
    if not isinstance(raw, list):
        raise ProtocolError(f"header field 'arrays' is {raw!r}; expected a list")
    if len(raw) > limits.max_arrays:
        raise FrameTooLarge(f"frame has {len(raw)} arrays; the limit is {limits.max_arrays}")
    specs = []
    for i, item in enumerate(raw):
        if not (isinstance(item, list) and len(item) == 2):
            raise ProtocolError(f"arrays[{i}] is {item!r}; expected [dtype, shape]")
        dtype, shape = item
        wire = WIRE_DTYPES.get(dtype) if isinstance(dtype, str) else None
        if wire is None:
            raise ProtocolError(f"arrays[{i}] has dtype {dtype!r}; allowed: {sorted(DTYPES)}")
        if not isinstance(shape, list) or len(shape) > limits.max_ndim:
            raise ProtocolError(
                f"arrays[{i}] has shape {shape!r}; expected a list of at most "
                f"{limits.max_ndim} sizes"
            )
        for n in shape:  # a loop, not all(...): this runs for every array of every frame
            if type(n) is not int or not 0 <= n <= limits.max_frame_bytes:
                raise _bad_shape(i, shape, limits)
        specs.append((wire, tuple(shape)))
    return specs


def _bad_shape(i: int, shape: list[Any], limits: Limits) -> ProtocolError:
    """The error for ``shape`` of ``arrays[i]``, which has a size that is not allowed."""
    if not all(type(n) is int and n >= 0 for n in shape):  # bools too are refused
        return ProtocolError(f"arrays[{i}] has shape {shape!r}; sizes must be ints >= 0")
    return FrameTooLarge(
        f"arrays[{i}] has shape {shape!r}; no axis can be longer than the frame limit "
        f"of {limits.max_frame_bytes}"
    )


def decode(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Frame:
    """Parse and validate one frame; raise a ProtocolError subclass naming what is wrong."""
    view = memoryview(data)
    header, offset = _read_header(view, limits)
    arrays, end = _read_arrays(header, view, offset, limits)
    if end < len(view):
        raise ProtocolError(f"frame has {len(view) - end} bytes after its last array")
    return _frame(header, arrays)


def decode_many(
    data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS
) -> list[tuple[Frame, memoryview] | BadFrame]:
    """Parse a message of frames sent back to back; return each with its own bytes.

    A client batches small frames so that one websocket message carries many. A frame that
    is refused costs only itself (a :class:`BadFrame` in its place) when its end can still be
    found from its header; otherwise it is the last item.
    """
    view = memoryview(data)
    items: list[tuple[Frame, memoryview] | BadFrame] = []
    start = 0
    while start < view.nbytes or not items:
        rest = view[start:]
        header: dict[str, Any] = {}
        try:
            header, offset = _read_header(rest, limits)
            arrays, end = _read_arrays(header, rest, offset, limits)
        except ProtocolError as exc:
            items.append(BadFrame(exc, _seq_of(header), last=True))
            break
        try:
            items.append((_frame(header, arrays), rest[:end]))
        except ProtocolError as exc:
            items.append(BadFrame(exc, _seq_of(header)))
        start += end
    return items


def _seq_of(header: Mapping[str, Any]) -> int | None:
    seq = header.get("seq")
    return seq if type(seq) is int else None


def _read_header(view: memoryview, limits: Limits) -> tuple[dict[str, Any], int]:
    """The header map at the start of ``view`` (of a version we speak), and where the
    arrays start."""
    if view.nbytes > limits.max_frame_bytes:
        raise FrameTooLarge(
            f"frame of {view.nbytes} bytes exceeds the limit of {limits.max_frame_bytes} bytes"
        )
    if view.nbytes < _PREFIX.size:
        raise ProtocolError(f"frame of {view.nbytes} bytes is too short for its length prefix")
    (header_len,) = _PREFIX.unpack_from(view)
    if header_len > limits.max_header_bytes:
        raise FrameTooLarge(
            f"frame header of {header_len} bytes exceeds the limit of "
            f"{limits.max_header_bytes} bytes"
        )
    body = _PREFIX.size + header_len
    if body > view.nbytes:
        raise ProtocolError(
            f"frame header claims {header_len} bytes but only {view.nbytes - _PREFIX.size} follow"
        )
    try:
        header = msgpack.unpackb(
            view[_PREFIX.size : body],
            raw=False,
            strict_map_key=True,
            max_str_len=limits.max_header_bytes,
            max_bin_len=limits.max_header_bytes,
            max_array_len=4096,
            max_map_len=4096,
        )
    except Exception as exc:  # msgpack raises a zoo of types for bad input
        raise ProtocolError(f"frame header is not valid msgpack: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError(f"frame header is a {type(header).__name__}; expected a map")
    version = header.get("v")
    if version != VERSION:
        raise UnsupportedVersion(
            f"frame has protocol version {version!r}; this side speaks version {VERSION}: "
            "install the same streamvis version on client and server"
        )
    return header, body + _pad(body)


def _read_arrays(
    header: Mapping[str, Any], view: memoryview, offset: int, limits: Limits
) -> tuple[tuple[np.ndarray, ...], int]:
    """The arrays the header announces, as read-only views of ``view`` from ``offset``, and
    where the frame ends."""
    arrays = []
    for i, (dtype, shape) in enumerate(_array_specs(header, limits)):
        nbytes = math.prod(shape) * dtype.itemsize
        end = offset + nbytes
        if end > view.nbytes:
            raise ProtocolError(
                f"arrays[{i}] of shape {shape} and dtype {dtype.name} needs {nbytes} bytes "
                f"but only {max(0, view.nbytes - offset)} remain in the frame"
            )
        arrays.append(np.ndarray(shape, dtype, view, offset))  # a view, read-only
        offset = end + _pad(nbytes)
    return tuple(arrays), min(offset, view.nbytes)  # the last padding may be cut off


def _frame(header: Mapping[str, Any], arrays: tuple[np.ndarray, ...]) -> Frame:
    """The frame a header describes, once its fields are checked."""
    op = header.get("op")
    if op not in OPS:
        raise ProtocolError(f"header field 'op' is {op!r}; expected one of {OPS}")
    try:
        run = check_name(header.get("run"), "run name")
        name = header.get("name")
        if op == "plot" or name is not None:
            name = check_name(name, "plot name")
    except ArgumentError as exc:
        raise ProtocolError(str(exc)) from exc
    opts = header.get("opts", {})
    if not isinstance(opts, dict):
        raise ProtocolError(f"header field 'opts' is {opts!r}; expected a map")
    return Frame(
        op=op,
        run=run,
        cid=_field(header, "cid", str),
        seq=_field(header, "seq", int),
        name=name,
        opts=opts,
        arrays=arrays,
        ack=header.get("ack") is True,
        restore=header.get("restore") is True,
    )


def encode_reply(reply: Mapping[str, Any]) -> bytes:
    """Serialize a server reply (an ack or an error)."""
    return msgpack.packb(dict(reply), use_bin_type=True)


def decode_reply(data: bytes | str) -> dict[str, Any]:
    """Parse a server reply; raise ProtocolError if it is not a msgpack map."""
    if isinstance(data, str):
        raise ProtocolError("server reply is text; expected a binary msgpack map")
    try:
        reply = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise ProtocolError(f"server reply is not valid msgpack: {exc}") from exc
    if not isinstance(reply, dict):
        raise ProtocolError(f"server reply is a {type(reply).__name__}; expected a map")
    return reply
