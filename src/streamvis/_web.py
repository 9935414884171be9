"""The page port's HTTP side: Bokeh's tornado app behind the guard, and the ``/runs`` routes.

Every request passes :class:`Guard` before it reaches a handler, Bokeh's pages, static files
and websocket included: a foreign ``Host`` is refused, a browser's request from another
site's page may only read, and with a token every request must present it. ``?token=`` is
taken once: the answer sets a cookie and sends the browser to the same address without it.
A page in a frame (a notebook's output, maybe of another site, so with no cookie) is given
at its address with the token, which BokehJS passes on to its websocket; BokehJS's own
files need none.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from bokeh.server.tornado import BokehTornado
from tornado import httputil
from tornado.web import RequestHandler

from ._errors import ArgumentError, StreamvisError
from ._guard import Guard
from ._hub import Hub
from ._protocol import INGEST_PORT_HEADER, check_name

__all__ = ["GuardedTornado", "RunsHandler"]

log = logging.getLogger("streamvis.server")
_TOKEN_ARGUMENT = re.compile(r"(?<=[?&])token=[^&]*")
_READ_METHODS = ("GET", "HEAD", "OPTIONS")
_BOKEHJS = re.compile(r"/static/js/bokeh(-[a-z]+)?\.min\.js")  # what a page's script tags load


class GuardedTornado(BokehTornado):
    """Bokeh's application, with every request checked by ``guard`` first."""

    def __init__(
        self, *args: Any, guard: Guard, port: int, ingest_port: Callable[[], int], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.guard, self.page_port, self.ingest_port = guard, port, ingest_port

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        refusal = self._refusal(request)
        if refusal is not None:
            return self.get_handler_delegate(request, _Refused, refusal)
        if request.path == "/ingest":
            return self.get_handler_delegate(request, _NotIngest, {"port": self.ingest_port()})
        offered = _query_token(request)
        # A page in a frame may get no cookie: it keeps the token in its address, which
        # BokehJS gives its websocket too (so neither is sent on to a tokenless address).
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        navigated = request.headers.get("Sec-Fetch-Dest", "document") == "document" and not upgrade
        if offered is not None and request.method == "GET" and self.guard.token and navigated:
            return self.get_handler_delegate(request, _TakeToken, {"cookie": self._cookie})
        return super().find_handler(request, **kwargs)

    def log_request(self, handler: RequestHandler) -> None:
        """Log requests as tornado does, but never the token given in an address."""
        request = handler.request
        uri, request.uri = request.uri, _TOKEN_ARGUMENT.sub("token=***", request.uri or "")
        try:
            super().log_request(handler)
        finally:
            request.uri = uri

    @property
    def _cookie(self) -> tuple[str, str]:
        return self.guard.cookie_name(self.page_port), self.guard.cookie_value

    def _refusal(self, request: httputil.HTTPServerRequest) -> dict[str, Any] | None:
        """Why ``request`` may not go on (status and message), or None."""
        guard, host = self.guard, request.headers.get("Host")
        if not guard.host_allowed(host):
            log.warning("refused %s %s for foreign Host %r", request.method, request.path, host)
            return _why(403, f"this streamvis server is not {host!r}: open it as localhost")
        origin = request.headers.get("Origin")
        if request.method not in _READ_METHODS and not guard.same_origin(origin, host):
            log.warning("refused %s %s from a page at %r", request.method, request.path, origin)
            return _why(403, f"requests from pages at {origin!r} are refused")
        if guard.token is None or request.path == "/ingest":
            return None
        offered = _query_token(request)
        cookie = request.cookies.get(self._cookie[0])
        if (
            guard.token_matches(offered)
            if offered is not None
            else guard.bearer_matches(request.headers.get("Authorization"))
            or guard.cookie_matches(cookie.value if cookie is not None else None)
        ):
            return None
        if _BOKEHJS.fullmatch(request.path) and request.method in ("GET", "HEAD"):
            return None  # BokehJS's own bundles, as published: no run's data, for framed pages
        return _why(401, "", login=True)


def _why(status: int, message: str, login: bool = False) -> dict[str, Any]:
    return {"status": status, "message": message, "login": login}


def _other_arguments(request: httputil.HTTPServerRequest) -> list[tuple[str, str]]:
    """The address's arguments but the token, in order."""
    return [
        (k, v.decode("utf-8", "replace"))
        for k, values in request.query_arguments.items()
        if k != "token"
        for v in values
    ]


def _query_token(request: httputil.HTTPServerRequest) -> str | None:
    values = request.query_arguments.get("token")
    return values[-1].decode("utf-8", "replace") if values else None


_LOGIN_PAGE = """<!doctype html><title>streamvis: token needed</title>
<p>This streamvis server needs its token. Open the address it printed at start-up (it ends in
<code>?token=...</code>), or enter the token:</p>
<form method="get">{fields}<input type="password" name="token" autofocus> <button>Open</button>
</form><p>From scripts, send <code>Authorization: Bearer TOKEN</code>.</p>
"""


def _login_page(request: httputil.HTTPServerRequest) -> str:
    """The page asking for the token; submitting it keeps the address's other arguments."""
    fields = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in _other_arguments(request)
    )
    return _LOGIN_PAGE.format(fields=fields)


class _Refused(RequestHandler):
    """The answer to a request the guard refused."""

    def initialize(self, status: int, message: str, login: bool) -> None:
        self.status, self.message, self.login = status, message, login

    def prepare(self) -> None:
        self.set_status(self.status)
        if self.login:
            self.set_header("WWW-Authenticate", 'Bearer realm="streamvis"')
            self.finish(_login_page(self.request))
        else:
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"streamvis: {self.message}\n")


class _TakeToken(RequestHandler):
    """``GET ...?token=TOKEN`` (checked already): keep it in a cookie, go on without it."""

    def initialize(self, cookie: tuple[str, str]) -> None:
        self.cookie = cookie

    def prepare(self) -> None:
        name, value = self.cookie
        self.set_cookie(name, value, httponly=True, samesite="Strict", path="/")
        query = _other_arguments(self.request)
        path = "/" + self.request.path.lstrip("/")  # "//host/" would leave this server
        target = path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        self.redirect(target)


class _NotIngest(RequestHandler):
    """``/ingest`` on the page port: a client was given the wrong port; say which is right."""

    def initialize(self, port: int) -> None:
        self.port = port

    def prepare(self) -> None:
        self.set_status(404)
        self.set_header(INGEST_PORT_HEADER, str(self.port))
        self.finish(f"streamvis: this is the page port; clients connect to port {self.port}\n")


class RunsHandler(RequestHandler):
    """``GET /runs``: every run, linking to its page, with a choice of runs to compare;
    ``GET /runs.json``: the same for scripts; ``DELETE /runs/NAME``."""

    def initialize(self, hub: Hub, live: Callable[[str], bool]) -> None:
        self.hub, self.live = hub, live

    def summaries(self) -> list[dict[str, Any]]:
        """Each run: its plots, its steps, when its first and last frames were made (by its
        clients' clocks; seconds since the epoch), and whether a client of it is connected."""
        out = []
        for name in self.hub.run_names():
            state = self.hub.runs[name]
            first, last = state.times if state.times is not None else (None, None)
            steps = list(state.steps) if state.steps is not None else None
            out.append(
                dict(run=name, plots=sorted(state.plots), steps=steps, first=first, last=last,
                     live=self.live(name))
            )  # fmt: skip
        return out

    def get(self, run: str | None = None) -> None:
        if run == ".json":
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.write(json.dumps(self.summaries(), allow_nan=False))
            return
        rows = "".join(_run_row(summary) for summary in self.summaries())
        self.write(_RUNS_PAGE.format(rows=rows))

    async def delete(self, run: str | None = None) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        try:
            name = check_name(run, "run name")
            deleted = await self.hub.delete(name)
        except ArgumentError as exc:
            self.set_status(404)
            self.write(f"no run named {run!r}: {exc}\n")
            return
        except StreamvisError as exc:
            self.set_status(500)
            self.write(f"{exc}\n")
            return
        if not deleted:
            self.set_status(404)
            self.write(f"no run named {name!r}\n")
        else:
            self.write(f"deleted run {name!r}\n")


_RUNS_PAGE = """<!doctype html><meta charset="utf-8"><title>streamvis runs</title>
<style>body {{ font: 14px sans-serif; }} td, th {{ padding: 2px 10px; text-align: left; }}</style>
<form action="/" method="get"><table>
<tr><th></th><th>run</th><th>started</th><th>last sent</th><th>steps</th><th>plots</th>
<th></th></tr>
{rows}</table><button type="submit">show the runs chosen</button></form>"""


def _run_row(summary: dict[str, Any]) -> str:
    """One run of the ``/runs`` page: a box to choose it, a link to its page, and its times."""
    name = html.escape(summary["run"])
    link = f'<a href="/?run={urllib.parse.quote(summary["run"])}">{name}</a>'
    when = [
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t is not None else "-"
        for t in (summary["first"], summary["last"])
    ]
    steps = "{} to {}".format(*summary["steps"]) if summary["steps"] else "-"
    live = "live" if summary["live"] else ""
    box = f'<input type="checkbox" name="run" value="{name}">'
    cells = (box, link, *when, steps, str(len(summary["plots"])), live)
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>\n"
