"""Who may use the console: a token given once at login, then a session cookie.

The browser posts the console token to `/api/login`; the answer sets a random session id
in an HttpOnly, SameSite=Strict cookie (Secure under TLS). Every other `/api/` route
answers 401 without a live session. Requests that change state must also come from the
console's own origin (`Origin`, else `Referer`, naming this host): SameSite=Strict keeps
the cookie off cross-site requests in browsers that honour it, and this check covers the
rest. Sessions live in this process's memory; a restart asks everyone to log in again.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from urllib.parse import urlsplit

from fastapi import Request

from forgeline.console.errors import ConsoleError

COOKIE = "forgeline_console"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Sessions:
    """Session ids handed out at login, each with its expiry time."""

    def __init__(self, token: str, lifetime: float):
        self._token = token
        self._lifetime = lifetime
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def login(self, token: str) -> str:
        """A new session id for the right token.

        Raises:
            ConsoleError: 401, the token is wrong (compared in constant time).
        """
        if not hmac.compare_digest(token.encode(), self._token.encode()):
            raise ConsoleError(401, "wrong token", field="token")
        session = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._expiry = {s: t for s, t in self._expiry.items() if t > now}
            self._expiry[session] = now + self._lifetime
        return session

    def valid(self, session: str | None) -> bool:
        """Whether `session` is a live session id."""
        if not session:
            return False
        with self._lock:
            expiry = self._expiry.get(session)
        return expiry is not None and expiry > time.monotonic()

    def logout(self, session: str | None) -> None:
        """Ends a session."""
        with self._lock:
            self._expiry.pop(session or "", None)


def check_origin(request: Request) -> None:
    """Refuses a state-changing request that does not come from the console's own pages.

    Raises:
        ConsoleError: 403, its `Origin` (or `Referer`) is missing or names another site.
    """
    if request.method in SAFE_METHODS:
        return
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    host = request.headers.get("host", "")
    parts = urlsplit(source)
    if not source or parts.netloc != host or parts.scheme not in ("http", "https"):
        raise ConsoleError(403, "cross-origin request refused", code="bad_origin")


def require_session(request: Request) -> None:
    """Dependency of every API route but login: a live session, and a same-origin
    request when it changes state.

    Raises:
        ConsoleError: 401 without a live session; 403 for another origin.
    """
    sessions: Sessions = request.app.state.sessions
    if not sessions.valid(request.cookies.get(COOKIE)):
        raise ConsoleError(401, "log in with the console token", code="unauthenticated")
    check_origin(request)
