"""Browser safety: which Host names the service answers, and which requests may change state.

A browser visiting any web page can send requests to the service (a form posted across
origins, a ``fetch`` to a name that a DNS rebinding points at 127.0.0.1). :class:`BrowserGuard`,
an ASGI middleware in front of every route, makes such requests harmless:

* **Host.** The ``Host`` header must be an IP address, a loopback name (``localhost``), the
  name the service is bound to, this machine's host name, or a name listed in
  ``TH2ETL_ALLOWED_HOSTS`` (comma-separated; ``*`` allows every name). Anything else is
  answered 400 before any route runs: a page on ``evil.example`` that rebinds its name to
  127.0.0.1 reaches nothing. (An IP address cannot be rebound, so it is always accepted.)
* **Origin.** A state-changing request (``POST``, ``PUT``, ``PATCH``, ``DELETE``) that carries
  an ``Origin`` header, or lacking one a ``Referer``, must come from the service's own origin
  (same host and port as the request's ``Host``); else 403. Browsers send ``Origin`` on every
  cross-origin write, so a cross-site form or ``fetch`` is refused.
* **Cookie without origin.** A state-changing request authenticated by the UI's session cookie
  (:data:`SESSION_COOKIE`, no ``Authorization`` header) must carry ``Origin`` or ``Referer``;
  else 403. The CLI, :class:`~th2etl.helpers.th2etl_client.Th2etlClient` and scripts send
  neither header nor the cookie, and keep working with the key (or keyless on loopback).
* **JSON only.** A state-changing request with a body on a JSON endpoint must say
  ``Content-Type: application/json``; a form (``application/x-www-form-urlencoded``,
  ``multipart/form-data``) or ``text/plain`` body, the kinds a page can post across origins
  without asking, is refused 415. Only the UI's login form (under ``/ui/``) takes a form.

So the keyless service on loopback (``th2etl --serve-api``) stays convenient for local tools
and is safe from the pages a user visits.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "SESSION_COOKIE",
    "UNSAFE_METHODS",
    "BrowserGuard",
    "HostPolicy",
    "allowed_hosts_from_env",
]

SESSION_COOKIE = "th2etl_session"
"""The UI's session cookie (HttpOnly, SameSite=Strict; Secure behind HTTPS)."""

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_FORM_PREFIXES = ("/ui/",)


def allowed_hosts_from_env() -> list[str]:
    """``TH2ETL_ALLOWED_HOSTS`` as a list of names (empty when unset)."""
    raw = os.environ.get("TH2ETL_ALLOWED_HOSTS", "")
    return [name.strip() for name in raw.split(",") if name.strip()]


def _split_host(value: str) -> tuple[str, str | None]:
    """``host[:port]`` -> (lower-case host without IPv6 brackets, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    host, colon, port = value.rpartition(":")
    if not colon:
        return value, None
    if ":" in host:  # a bare IPv6 address, no port
        return value, None
    return host, port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostPolicy:
    """Which ``Host`` names the service answers (see the module docstring)."""

    def __init__(self, bound_host: str = "127.0.0.1", allowed: Iterable[str] = ()) -> None:
        names = {name.strip().lower().rstrip(".") for name in allowed if name.strip()}
        self.any = "*" in names
        bound = bound_host.strip().strip("[]").lower()
        if bound and not _is_ip(bound):
            names.add(bound)
        names |= _LOOPBACK_NAMES
        names.add(socket.gethostname().lower())
        names.discard("*")
        self.names = frozenset(names)

    def allows(self, host_header: str | None) -> bool:
        if self.any:
            return True
        if not host_header:
            return False  # HTTP/1.1 requires Host; an HTTP/1.0 request without it is refused
        host, _ = _split_host(host_header)
        return _is_ip(host) or host.rstrip(".") in self.names


class BrowserGuard:
    """ASGI middleware enforcing the rules of this module's docstring."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        host = headers.get("host")
        if not self.policy.allows(host):
            await _refuse(
                scope,
                send,
                400,
                f"the Host header {host!r} is not a name of this th2etl service (a page using "
                "DNS rebinding sends such a name); use the address the service listens on, or "
                "add the name to TH2ETL_ALLOWED_HOSTS (comma-separated) when starting it",
            )
            return
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS:
            refusal = _write_refusal(scope, headers)
            if refusal is not None:
                await _refuse(scope, send, *refusal)
                return
        await self.app(scope, receive, send)


def _write_refusal(scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
    """Why a state-changing request is refused (status, message), or None to let it through."""
    host = headers.get("host", "")
    source = headers.get("origin")
    kind = "Origin"
    if source is None and "referer" in headers:
        source, kind = headers["referer"], "Referer"
    if source is not None:
        parts = urlsplit(source) if source != "null" else None
        if parts is None or _split_host(parts.netloc) != _split_host(host) or not parts.netloc:
            return (
                403,
                f"cross-origin request refused: its {kind} {source!r} is not this service "
                f"({host}); a web page may not change th2etl's state; use the th2etl UI, the "
                "CLI or an API client (which send no Origin)",
            )
    elif SESSION_COOKIE in _cookie_names(headers.get("cookie", "")) and not headers.get(
        "authorization"
    ):
        return (
            403,
            "a request authenticated by the UI's session cookie must carry an Origin or "
            "Referer header; browsers send one, so this request did not come from the th2etl "
            "UI; scripts authenticate with 'Authorization: Bearer <key>' instead",
        )
    path: str = scope.get("path", "")
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and not path.startswith(_FORM_PREFIXES) and not _is_json(content_type):
        return (
            415,
            f"this endpoint takes JSON, not {content_type!r}; send a JSON object with "
            "Content-Type: application/json",
        )
    return None


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def _cookie_names(header: str) -> set[str]:
    return {part.split("=", 1)[0].strip() for part in header.split(";") if part.strip()}


async def _refuse(scope: Scope, send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
