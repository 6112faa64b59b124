"""The dashboard's session cookie: the API key asked once, then a signed, expiring token.

The token is ``<expires>.<signature>``: the expiry (Unix seconds) signed with HMAC-SHA256 keyed
by the service's API key, so it needs no server-side store, outlives a restart, and every
session ends when the key changes. The cookie (:data:`~th2etl.api.security.SESSION_COOKIE`) is
``HttpOnly`` (scripts cannot read it), ``SameSite=Strict`` (no other site's page sends it) and
``Secure`` when the request came over HTTPS (directly or through a proxy that says so in
``X-Forwarded-Proto``). A write authenticated by it must also pass the Origin check of
:mod:`th2etl.api.security`.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from starlette.requests import Request
from starlette.responses import Response

from th2etl.api.security import SESSION_COOKIE

__all__ = ["SESSION_SECONDS", "clear_session", "has_session", "sign", "start_session"]

SESSION_SECONDS = 12 * 3600
"""How long a session lasts before the key is asked again."""


def _signature(key: str, expires: int) -> str:
    message = f"th2etl-ui-session:{expires}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def sign(key: str, now: float | None = None) -> str:
    """A new session token for ``key``, valid for :data:`SESSION_SECONDS`."""
    expires = int((time.time() if now is None else now) + SESSION_SECONDS)
    return f"{expires}.{_signature(key, expires)}"


def valid(key: str, token: str, now: float | None = None) -> bool:
    expires_text, _, signature = token.partition(".")
    if not expires_text.isdigit():
        return False
    expires = int(expires_text)
    if expires < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(signature.encode(), _signature(key, expires).encode())


def has_session(request: Request, key: str) -> bool:
    """Whether ``request`` carries a valid session cookie for ``key``."""
    token = request.cookies.get(SESSION_COOKIE)
    return token is not None and valid(key, token)


def _secure(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def start_session(response: Response, request: Request, key: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        sign(key),
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request)
    )
