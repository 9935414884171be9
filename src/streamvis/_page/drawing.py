"""The thread that draws every page's images, and reads from the store what pages show: one
thread, so that the event loop keeps a core. Work goes to it; what it returns (or raises)
comes back on the document's thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["off_loop"]

_thread: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def off_loop(
    work: Callable[[], Any],
    then: Callable[[Any], None],
    call_soon: Callable[[Callable[[], None]], None],
) -> None:
    """Run ``work`` on the drawing thread, then ``then`` through ``call_soon`` (on the
    document's thread) with what it returned, or the exception it raised."""

    def finished(done: Future[Any]) -> None:
        error = done.exception()
        call_soon(lambda: then(error if error is not None else done.result()))

    _drawer().submit(work).add_done_callback(finished)


def _drawer() -> ThreadPoolExecutor:
    global _thread
    with _lock:
        if _thread is None:
            _thread = ThreadPoolExecutor(1, thread_name_prefix="streamvis-draw")
        return _thread
