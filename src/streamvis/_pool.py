"""Pooled buffers for the client's large frames, reused once the server acknowledges them."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from . import _protocol as protocol

__all__ = ["HEAD_ROOM", "JOIN_BELOW", "BufferPool"]

JOIN_BELOW = 2**16  # frames smaller than this travel joined with others, not pooled
HEAD_ROOM = 1024  # free bytes before a pooled frame's arrays, where its head goes
_PAD_ROOM = 8  # at most what padding adds to an array
_POOL_SIZES = 4  # sizes of free buffers kept


class BufferPool:
    """Buffers for large frames, reused once acknowledged.

    Memory fresh from the OS costs a page fault per 4 KiB page on first write, which is
    many times the cost of copying into it; a reused buffer costs only the copy. Free
    buffers are kept per size, in deques (thread-safe without a lock), for at most
    ``_POOL_SIZES`` sizes and ``max_free_bytes // _POOL_SIZES`` bytes of each.
    """

    def __init__(self, max_free_bytes: int) -> None:
        self.max_free_bytes = max_free_bytes
        self._free: dict[int, deque[np.ndarray]] = {}

    def copy(
        self, arrays: tuple[np.ndarray, ...], nbytes: int
    ) -> tuple[tuple[np.ndarray, ...], np.ndarray | None]:
        """Private C-ordered little-endian copies of ``arrays`` (``nbytes`` in all), and the
        pooled buffer that holds them if they fill a message of their own.

        In the buffer they lie as a frame carries them, after room for the frame's head.
        """
        if nbytes < JOIN_BELOW:
            return tuple([np.array(a, _wire_dtype(a.dtype), order="C") for a in arrays]), None
        buffer = self.take(HEAD_ROOM + nbytes + _PAD_ROOM * len(arrays))
        copies = []
        start = HEAD_ROOM
        for array in arrays:
            end = start + array.nbytes
            copy = np.ndarray(array.shape, _wire_dtype(array.dtype), buffer, start)
            copy[...] = array
            copies.append(copy)
            start = protocol.padded(end)
            if start > end:
                buffer[end:start] = 0
        return tuple(copies), buffer

    def take(self, nbytes: int) -> np.ndarray:
        """A uint8 buffer of at least ``nbytes``: a free one if there is one of its size."""
        size = _size_class(nbytes)
        free = self._free.get(size)
        if free:
            try:
                return free.pop()
            except IndexError:  # another thread took the last one
                pass
        return np.empty(size, np.uint8)

    def give(self, buffer: np.ndarray) -> None:
        """Return ``buffer``, which nothing may use any more; the oldest beyond the cap go."""
        size = buffer.nbytes
        free = self._free.get(size)
        if free is None:
            limit = self.max_free_bytes // _POOL_SIZES // size
            if not limit:
                return  # too large to keep
            if len(self._free) >= _POOL_SIZES:
                self._free = {}  # the sizes in use changed: the free buffers are stale
            free = self._free[size] = deque(maxlen=limit)
        free.append(buffer)


def _size_class(nbytes: int) -> int:
    """``nbytes`` rounded up to 1/16 of its power of two (at least a page): reusable sizes."""
    shift = max(nbytes.bit_length() - 4, 12)
    return -(-nbytes >> shift) << shift


def _wire_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    return dtype if dtype.isnative else dtype.newbyteorder("<")
