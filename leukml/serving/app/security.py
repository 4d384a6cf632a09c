"""Safe by default: loopback unless a token guards the page; requests only by the page's own names
and from its own origin; headers that keep the page out of other sites' frames and scripts (the
limits: ``config.Limits``; the checks on every request: ``guard``)."""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from leukml.common.errors import LeukmlError

TOKEN_ENV = "LEUKML_APP_TOKEN"
TOKEN_COOKIE = "leukml_app_token"
MIN_TOKEN_CHARS = 12
# what every answer carries: no script, style or frame from elsewhere, no page framing this one,
# no sniffing a JSON answer into HTML, no address (with its ?token=) sent on to another site
HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token, and a short token anywhere.

    Raises:
        ValueError: ``host`` is not a loopback address and no token is set, or the token set has
            fewer than ``MIN_TOKEN_CHARS`` characters besides spaces.
    """
    if token:
        chars = len(token.strip())
        if chars < MIN_TOKEN_CHARS:
            spaces = " besides spaces" if chars != len(token) else ""
            raise LeukmlError(f"{TOKEN_ENV} is {chars} characters{spaces}; use at least {MIN_TOKEN_CHARS}")
        return
    if not is_loopback(host):
        raise LeukmlError(
            f"--host {host} is not a loopback address: anyone who can reach it could use the page; "
            f"set {TOKEN_ENV} to a secret token (at least {MIN_TOKEN_CHARS} characters) or bind 127.0.0.1"
        )


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _name(host_header: str) -> str | None:
    """The name or address of a ``Host`` header, without its port; None if it is malformed."""
    try:
        parts = urlsplit(f"//{host_header}")
        _ = parts.port  # a port that is no number raises
        return parts.hostname
    except ValueError:
        return None


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """Which ``Host`` headers the page answers: against DNS rebinding, where another site's name
    is pointed at this address to reach the page from a browser with that site's rights.

    Answered: the bound address (and ``localhost`` for a loopback one), any address when bound to
    all of them (``0.0.0.0``, ``::``; an address can't be rebound, only a name can), and the names
    given with ``--allowed-host``. Every other name gets 421."""

    def __init__(self, bound: str, allowed: tuple[str, ...] = ()) -> None:
        self.bound = bound.strip("[]").lower()
        self.names = {n.strip().lower().rstrip(".") for n in allowed if n.strip()}
        wildcard = _is_address(self.bound) and ipaddress.ip_address(self.bound).is_unspecified
        self.any_address = wildcard
        if wildcard or is_loopback(self.bound):
            self.names.add("localhost")
        self.names.add(self.bound)

    def allows(self, host_header: str | None) -> bool:
        name = _name(host_header or "")
        if not name:
            return False
        name = name.lower().rstrip(".")
        return name in self.names or (self.any_address and _is_address(name))


def same_origin(origin: str | None, host_header: str | None) -> bool:
    """Whether a request's ``Origin`` is this page's own (the one it was sent to). A request
    without ``Origin`` is not from another site's page: browsers send it on every cross-site POST."""
    if origin is None:
        return True
    parts = urlsplit(origin)
    own = (host_header or "").lower()
    return parts.scheme in ("http", "https") and bool(own) and parts.netloc.lower() == own
