"""Who may use a server: its Host, Origin and token checks, as pure functions of headers.

Three attacks shape it. A web page the user visits may open websockets and send requests to
127.0.0.1 (*cross-site requests*): browsers say where they come from in ``Origin``, which
streamvis clients never send. A page on a name that the attacker points at 127.0.0.1 (*DNS
rebinding*) is same-origin to the browser, but its requests carry the attacker's name in
``Host``. And anyone who can reach the ports reads or writes runs unless a token is set,
which every endpoint then asks for: as ``Authorization: Bearer TOKEN``, as ``?token=TOKEN``
once (a browser then keeps a cookie), or as that cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import urllib.parse
from collections.abc import Sequence

__all__ = ["COOKIE_PREFIX", "Guard", "hide_tokens", "is_loopback", "split_host"]

COOKIE_PREFIX = "streamvis_token_"
_SECRET = re.compile(r"(?i)(bearer\s+|token=)[^\s&'\"]+")


class _HideTokens(logging.Filter):
    """Writes tokens in a log record as ``***`` (websockets logs every header at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        hidden = _SECRET.sub(r"\1***", message)
        if hidden != message:
            record.msg, record.args = hidden, ()
        return True


def hide_tokens(*loggers: str) -> None:
    """Keep tokens out of what ``loggers`` write."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _HideTokens) for f in logger.filters):
            logger.addFilter(_HideTokens())


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def split_host(value: str) -> tuple[str, int | None]:
    """``"name:port"`` or ``"[::1]:port"`` as (name, port); the name lowercased."""
    parsed = urllib.parse.urlsplit(f"//{value.strip()}")
    try:
        port = parsed.port
    except ValueError:
        port = None
    return (parsed.hostname or "").lower(), port


class Guard:
    """The checks of one server bound to ``host``, with an optional ``token``.

    ``extra_hosts`` ("HOST[:PORT]") are names besides ``localhost`` and IP addresses under
    which a loopback server may be reached. A server bound beyond loopback has a token (it
    refuses to start without) and takes any ``Host``, as the machine has names of its own.
    """

    def __init__(self, host: str, token: str | None, extra_hosts: Sequence[str] = ()) -> None:
        self.token = token or None
        self._any_host = not is_loopback(host)
        self._names = {"localhost", host.lower()} | {split_host(h)[0] for h in extra_hosts}
        digest = hmac.new((token or "").encode(), b"streamvis page cookie", hashlib.sha256)
        self.cookie_value = digest.hexdigest()

    def host_allowed(self, host_header: str | None) -> bool:
        """Whether a request's ``Host`` names this server (not a name rebound to it)."""
        if self._any_host:
            return True
        name, _ = split_host(host_header or "")
        return bool(name) and (name in self._names or _is_address(name))

    @staticmethod
    def same_origin(origin: str | None, host_header: str | None) -> bool:
        """Whether a browser's request comes from a page of this server (or no browser)."""
        if origin is None:
            return True
        netloc = urllib.parse.urlsplit(origin).netloc.lower()
        return bool(netloc) and netloc == (host_header or "").strip().lower()

    def token_matches(self, offered: str | None) -> bool:
        """Whether ``offered`` is the token (True for anything when none is set)."""
        if self.token is None:
            return True
        return offered is not None and hmac.compare_digest(offered.encode(), self.token.encode())

    def bearer_matches(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header presents the token (True when none is set)."""
        if self.token is None:
            return True
        scheme, _, offered = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(offered.strip())

    def cookie_matches(self, value: str | None) -> bool:
        """Whether a page cookie (set after ``?token=``) proves the token."""
        if self.token is None:
            return True
        return value is not None and hmac.compare_digest(value.encode(), self.cookie_value.encode())

    @staticmethod
    def cookie_name(port: int) -> str:
        """The page cookie's name: cookies ignore ports, so each server's has its own."""
        return f"{COOKIE_PREFIX}{port}"
