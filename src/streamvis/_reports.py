"""What went wrong far from the caller's line, kept for the caller without stopping it.

A remote error (the server refused a frame, could not write its log, refused the client) is
the training loop's business only if it asks: each distinct one is logged once as a warning
(and again at 10, 100, ... repeats) and kept with its count; in strict mode each is also
queued for the caller's next call to raise.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from ._errors import ServerError

__all__ = ["ON_ERROR", "Reports"]

log = logging.getLogger("streamvis.client")

ON_ERROR = ("warn", "raise")
_DISTINCT = 100  # distinct errors kept, at most
_UNRAISED = 1000  # errors waiting to be raised, at most (strict mode)


class Reports:
    """The remote errors of one client."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self._lock = threading.Lock()
        self._distinct: dict[tuple[str | None, str], ServerError] = {}
        self._unraised: deque[ServerError] = deque(maxlen=_UNRAISED)

    def report(self, error: ServerError, what: str | None = None) -> None:
        """Keep ``error``; ``what`` (default: its message) says which errors are the same."""
        key = (error.plot, what if what is not None else str(error))
        with self._lock:
            seen = self._distinct.get(key)
            if seen is None:
                log.warning("%s", error)
                if len(self._distinct) < _DISTINCT:  # beyond, logged but not kept
                    self._distinct[key] = error
            else:
                seen.count += 1
                if _is_power_of_ten(seen.count):
                    log.warning("%s (seen %d times)", seen, seen.count)
            if self.strict:
                self._unraised.append(error)

    @property
    def errors(self) -> list[ServerError]:
        """Every distinct error so far, oldest first, each with its ``count``."""
        with self._lock:
            return list(self._distinct.values())

    @property
    def pending(self) -> bool:
        """Whether errors wait to be raised (a cheap check, on every call)."""
        return bool(self._unraised)

    def pop(self) -> list[ServerError]:
        """Take the errors that wait to be raised."""
        with self._lock:
            errors = list(self._unraised)
            self._unraised.clear()
        return errors


def _is_power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1
