"""Live plots in notebooks: :func:`serve` starts a server inside the kernel (on a thread, free
ports) for a training loop in the same notebook; :func:`show` puts a run's live dashboard
in the notebook's output, from that server or any other (with its token).

The dashboard is the server's own page in an inline frame, so it keeps its time control
and its live updates, and the notebook's page gets nothing of the server's but that frame.
"""

from __future__ import annotations

import atexit
import importlib
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import ArgumentError
from ._protocol import check_name

__all__ = ["Served", "dashboard_url", "serve", "show"]


@dataclass(frozen=True)
class Served:
    """A server started by :func:`serve`: where its pages are (``address``), where clients
    connect (``ingest``), its token, and :meth:`stop`."""

    address: str  # HOST:PORT of the pages
    ingest: str  # HOST:PORT for Client(...)
    token: str | None = None
    _stop: Any = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return self.address

    def stop(self) -> None:
        """Stop the server (what it received is stored first)."""
        if self._stop is not None:
            self._stop()

    def _repr_html_(self) -> str:
        link = f"<a href='http://{self.address}/' target='_blank'>{self.address}</a>"
        return f"streamvis pages at {link} (clients: Client({self.ingest!r}, RUN))"


_SERVED: dict[str, Served] = {}  # by data folder: a cell run again replaces its server


def serve(
    run_name: str = "default", *, data_dir: str | Path | None = "streamvis_data",
    host: str = "127.0.0.1", token: str | None = None, **options: Any,
) -> Served:  # fmt: skip
    """Start a server in this process, on a thread, on free ports (unless ``ingest_port``
    or ``bokeh_port`` say); returns where it is. ``data_dir=None`` keeps runs in memory
    only; ``options`` go to StreamvisServer. Serving a data folder again (a cell run
    twice) stops the server that had it first; all stop when the kernel exits."""
    from ._server import start_in_thread  # Bokeh's server: only when one is asked for

    folder = str(Path(data_dir).resolve()) if data_dir is not None else None
    if folder is not None and folder in _SERVED:
        _SERVED.pop(folder).stop()
    options.setdefault("ingest_port", 0)
    options.setdefault("bokeh_port", 0)
    server, stop = start_in_thread(
        run_name=run_name, data_dir=data_dir, host=host, token=token, **options
    )
    atexit.register(stop)  # what it received is stored before the kernel goes
    shown = "localhost" if host in ("127.0.0.1", "::1", "0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown  # an IPv6 address
    served = Served(f"{shown}:{server.bokeh_port}", f"{shown}:{server.ingest_port}",
                    server.token, stop)  # fmt: skip
    if folder is not None:
        _SERVED[folder] = served
    return served


def dashboard_url(run: str, address: str | Served, token: str | None = None, **query: Any) -> str:
    """The address of ``run``'s page on the server at ``address`` (HOST:PORT or a URL)."""
    check_name(run, "run name")
    if isinstance(address, Served):
        token = token or address.token
    where = str(address)
    base = where if "://" in where else f"http://{where}"
    token = token or os.environ.get("STREAMVIS_TOKEN") or None
    args = {"run": run, **query, **({"token": token} if token else {})}
    return f"{base.rstrip('/')}/?{urllib.parse.urlencode(args)}"


def show(
    run: str, address: str | Served = "localhost:5006", *, token: str | None = None,
    height: int = 760, **query: Any,
) -> None:  # fmt: skip
    """Show ``run``'s live dashboard in the notebook's output (Jupyter, VS Code): the page
    of the server at ``address`` (as :func:`serve` returned it, or HOST:PORT), with
    ``token`` (else the served one's, else $STREAMVIS_TOKEN) where the server has one.
    ``query`` adds to the page's address (``step=57``, ``x="time"``)."""
    try:
        display = importlib.import_module("IPython.display")
    except ImportError as exc:
        raise ArgumentError(
            "show() needs IPython: run it in a Jupyter or VS Code notebook"
        ) from exc
    frame = display.IFrame(dashboard_url(run, address, token, **query), width="100%",
                           height=height)  # fmt: skip
    display.display(frame)  # (returned, a notebook would show it twice)
