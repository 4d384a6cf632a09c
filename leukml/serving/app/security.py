"""Safe by default: loopback unless a token guards the page (the limits: ``config.Limits``)."""

from __future__ import annotations

import hmac
import ipaddress

TOKEN_ENV = "LEUKML_APP_TOKEN"
TOKEN_COOKIE = "leukml_app_token"
MIN_TOKEN_CHARS = 12


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token.

    Raises:
        ValueError: ``host`` is not a loopback address and no token (or too short a one) is set.
    """
    if is_loopback(host):
        return
    if not token:
        raise ValueError(
            f"--host {host} is not a loopback address: anyone who can reach it could use the page; "
            f"set {TOKEN_ENV} to a secret token (at least {MIN_TOKEN_CHARS} characters) or bind 127.0.0.1"
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"{TOKEN_ENV} is {len(token)} characters; use at least {MIN_TOKEN_CHARS}")


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())
