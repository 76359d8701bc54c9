"""Console sessions and CSRF tokens: stateless, signed with a key derived from the admin token.

A session is ``<expires>.<nonce>.<mac>``, the MAC an HMAC-SHA256 over the expiry and nonce
with a key derived from ``TRACKWAY_ADMIN_TOKEN``. Every process that shares the token checks
every other's sessions without shared state, and changing the token signs everyone out.
The admin token itself never reaches the browser.

CSRF: every form that changes something carries ``csrf``, an HMAC of the session (so it is
bound to it and needs no storage), checked on every POST. The sign-in form, which has no
session yet, uses a double submit: a random value in a ``SameSite=Strict`` cookie and the
same in the form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE: Final = "trackway_console"
SIGNIN_COOKIE: Final = "trackway_console_signin"
PATH: Final = "/console"


def _key(admin_token: str, purpose: str) -> bytes:
    return hmac.new(admin_token.encode(), f"trackway-console:{purpose}".encode(), hashlib.sha256).digest()


def _mac(admin_token: str, purpose: str, message: str) -> str:
    return hmac.new(_key(admin_token, purpose), message.encode(), hashlib.sha256).hexdigest()


def token_matches(given: str, admin_token: str) -> bool:
    """Constant-time comparison of a typed token with the admin token."""
    return hmac.compare_digest(given.strip().encode(), admin_token.encode())


def new_session(admin_token: str, lifetime_seconds: int, now: float | None = None) -> str:
    expires = int((now if now is not None else time.time()) + lifetime_seconds)
    nonce = secrets.token_urlsafe(12)
    return f"{expires}.{nonce}.{_mac(admin_token, 'session', f'{expires}.{nonce}')}"


def session_valid(value: str | None, admin_token: str | None, now: float | None = None) -> bool:
    """A session this token signed that has not expired."""
    if not value or not admin_token or len(value) > 200:
        return False
    expires, _, rest = value.partition(".")
    nonce, _, mac = rest.partition(".")
    if not expires.isdigit() or not nonce or not mac:
        return False
    if not hmac.compare_digest(mac, _mac(admin_token, "session", f"{expires}.{nonce}")):
        return False
    return int(expires) > (now if now is not None else time.time())


def csrf_token(session: str, admin_token: str) -> str:
    """The CSRF token of a session's forms."""
    return _mac(admin_token, "csrf", session)


def csrf_valid(given: str | None, session: str, admin_token: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given), csrf_token(session, admin_token))


def is_https(request: Request) -> bool:
    """The browser's connection is https: directly, or as a proxy says (``X-Forwarded-Proto``).

    Trusting the header costs nothing: all it can do is make a cookie ``Secure``."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path=PATH, httponly=True, samesite="strict", secure=is_https(request))
