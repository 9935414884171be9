"""What a caller hands the client, made usable: arrays (numpy, torch, anything array-like)
and the server's address, each with an error that says what to pass instead."""

from __future__ import annotations

import urllib.parse
from typing import Any

import numpy as np

from ._errors import ArgumentError, DTypeError, ShapeError
from ._protocol import DTYPES, INGEST_PATH, WIRE_DTYPES
from ._specs import check_int

__all__ = ["MAX_STEP", "as_array", "check_step", "ingest_uri", "whole"]

MAX_STEP = 2**62  # steps are stored as SQLite integers (64 bits)

_WIRE_DTYPES = frozenset(WIRE_DTYPES.values())


def as_array(value: Any, what: str) -> np.ndarray:
    """Return ``value`` as a host numpy array (numpy, ``__array__``, torch on any device).

    Raises DTypeError for dtypes that are not real numbers. The result may share memory with
    ``value``: the transport copies it before the call returns.
    """
    array = value if type(value) is np.ndarray else _host_array(value, what)
    if array.dtype not in _WIRE_DTYPES and array.dtype.name not in DTYPES:  # fast path first
        if array.dtype == np.bool_:
            hint = "convert it with .astype(np.uint8)"
        elif array.dtype.kind == "c":
            hint = "plot its .real and .imag separately"
        else:
            hint = "convert it to a float or integer array"
        raise DTypeError(f"{what} has dtype {array.dtype}, which cannot be plotted: {hint}")
    return array


def _host_array(value: Any, what: str) -> np.ndarray:
    """``value`` (a torch tensor, anything with ``__array__``, nested lists) as numpy."""
    if hasattr(value, "detach") and hasattr(value, "device"):  # a torch tensor, maybe on a GPU
        value = value.detach()
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            value = value.float()
        value = value.cpu().numpy()
    try:
        return np.asarray(value)
    except ValueError as exc:  # ragged nested lists, mostly
        raise ShapeError(f"{what} is not a rectangular array: {exc}") from exc


def ingest_uri(address: str) -> str:
    """The websocket URI of the ingest endpoint at ``address`` ("host:port", or an http://,
    https://, ws:// or wss:// address, whose path defaults to the ingest path)."""
    if not isinstance(address, str):
        raise ArgumentError(f"address must be a str like 'localhost:8080', got {address!r}")
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    scheme, sep, rest = address.strip().partition("://")
    if not sep:
        scheme, rest = "ws", address.strip()
    elif scheme.lower() not in schemes:
        raise ArgumentError(
            f"address {address!r} has scheme {scheme!r}: write 'host:port' (e.g. "
            "'localhost:8080'), or an http:// or ws:// address"
        )
    parsed = urllib.parse.urlsplit(f"//{rest}")
    try:
        port = parsed.port
    except ValueError:
        port = None
    if not parsed.hostname or port is None:
        example = f"{parsed.hostname or 'localhost'}:8080"
        raise ArgumentError(
            f"address {address!r} needs a host and the server's ingest port (--rest_port): "
            f"write {example!r}"
        )
    path = parsed.path if parsed.path not in ("", "/") else INGEST_PATH
    return f"{schemes[scheme.lower()]}://{parsed.netloc}{path}"


def check_step(step: object) -> int:
    """A step as a plain int (numpy and torch integers too), else ArgumentError."""
    return check_int(step, "step", -MAX_STEP, MAX_STEP)


def whole(x: np.ndarray) -> int | None:
    """A one-value array's value if it is a whole number (an int, or a float like 3.0)."""
    value = x.item()
    if type(value) is int and abs(value) <= MAX_STEP:
        return value
    if type(value) is float and value.is_integer() and abs(value) <= MAX_STEP:
        return int(value)
    return None
