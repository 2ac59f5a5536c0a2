"""Who may see the page and who may press its buttons. Pure logic.

- Bound to a loopback address, the page needs no token, but answers only
  requests whose ``Host`` is a loopback name (a DNS-rebinding page cannot reach it).
- On any other address it needs ``WORKFLOWS_UI_TOKEN`` (or ``--insecure``). With a
  token, every request carries it: ``Authorization: Bearer <token>``, or the
  session cookie the login form sets (an HMAC of the token, never the token).
- POSTs that change something need ``--allow-actions`` and, unless they carry the
  bearer header (which a browser never adds to a cross-site request), the CSRF
  token of the page's form.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

from workflows_tick.errors import UsageError

TOKEN_VARIABLE = "WORKFLOWS_UI_TOKEN"
SESSION_COOKIE = "workflows_ui_session"
CSRF_FIELD = "csrf"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (``127.0.0.0/8``, ``::1``)."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, insecure: bool) -> None:
    """Refuse to serve on a non-loopback address with neither a token nor ``--insecure``."""
    if is_loopback(host) or token or insecure:
        return
    raise UsageError(
        f"ui: refusing to serve on {host} without a token: set {TOKEN_VARIABLE} (every request "
        "then needs it) or pass --insecure to serve anyone who can reach the port"
    )


def host_name(header: str) -> str:
    """The name part of a ``Host`` header (``[::1]:8080`` -> ``::1``)."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass(frozen=True)
class Guard:
    """The rules of one ``ui`` process."""

    token: str | None
    secret: bytes
    """Random per process: keys the CSRF tokens."""
    loopback_only: bool
    """Bound to loopback without a token: answer loopback ``Host`` names only."""
    allow_actions: bool

    def session_value(self) -> str:
        assert self.token
        return hmac.new(self.token.encode(), b"workflows-ui-session", hashlib.sha256).hexdigest()

    def token_matches(self, offered: str) -> bool:
        return bool(self.token) and hmac.compare_digest(
            offered.encode(), (self.token or "").encode()
        )

    def authenticated(self, authorization: str | None, cookie: str | None) -> bool:
        if not self.token:
            return True
        if authorization and authorization.lower().startswith("bearer "):
            return self.token_matches(authorization[7:].strip())
        return cookie is not None and hmac.compare_digest(cookie, self.session_value())

    def host_allowed(self, host_header: str | None) -> bool:
        if not self.loopback_only:
            return True
        return host_header is not None and is_loopback(host_name(host_header))

    def csrf_token(self, cookie: str | None) -> str:
        """The token the page's forms carry; bound to the session when there is one."""
        return hmac.new(self.secret, (cookie or "").encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, offered: str | None, cookie: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered, self.csrf_token(cookie))


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
