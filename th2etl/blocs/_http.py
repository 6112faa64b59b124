"""One small HTTP request function on the standard library, shared by the HTTP blocs.

:func:`send` does one request with a timeout, retries what is worth retrying (exponential
backoff; a server's ``Retry-After`` wins, capped) and returns an :class:`HttpReply` whatever
its status. Every failure raises :class:`~th2etl.exceptions.HttpBlocError` whose message names
the bloc, the method, the URL with its credentials masked, the reason and what to do.
Credentials never reach a log line or a message (see :mod:`th2etl._urls`).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from th2etl._urls import Redactor, backoff_delay, mask_url
from th2etl.exceptions import HttpBlocError, ValidationError

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_RETRY_WAIT",
    "HttpReply",
    "check_http_url",
    "send",
]

logger = logging.getLogger("th2etl.blocs.http")

DEFAULT_TIMEOUT = 30.0
"""Seconds one HTTP request may take when the bloc's ``timeout`` is not set."""

MAX_RETRY_WAIT = 30.0
"""The longest wait between two attempts, whatever ``Retry-After`` asks for."""

# Statuses after which the request was surely not processed: safe to retry for any method.
_RETRY_ALWAYS = frozenset({429, 503})
# Statuses worth retrying when repeating the request does no harm.
_RETRY_IDEMPOTENT = frozenset({500, 502, 504})
# How much of an error body a message quotes.
_EXCERPT = 300


def check_http_url(url: Any, where: str, key: str) -> None:
    """Refuse a URL that is not ``http(s)://host...``; skipped while it holds a ``${...}``.

    A URL with a reference is checked again once resolved, when the bloc runs.
    """
    if not isinstance(url, str) or "${" in url:
        return
    problem = _url_problem(url)
    if problem is not None:
        raise ValidationError(f"{where}: config key {key!r} {problem}")


def _url_problem(url: str) -> str | None:
    example = "write e.g. 'https://api.example.com/items'"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"is not a valid URL ({exc}): {mask_url(url)!r}; {example}"
    if parts.scheme.lower() not in ("http", "https"):
        shown = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        return f"must be an http:// or https:// URL, got {mask_url(url)!r} ({shown}); {example}"
    if not parts.hostname:
        return f"has no host: {mask_url(url)!r}; {example}"
    return None


@dataclass
class HttpReply:
    """A server's answer: status, headers and body, with the URL it came from (masked)."""

    status: int
    url: str
    method: str
    headers: dict[str, str]
    body: bytes
    where: str
    redact: Redactor = field(repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def text(self) -> str:
        charset = "utf-8"
        for piece in self.content_type.split(";")[1:]:
            name, _, value = piece.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")

    def excerpt(self, limit: int = _EXCERPT) -> str:
        """The body's first characters, credentials redacted, for a message."""
        text = self.text().strip()
        if not text:
            return "(empty body)"
        short = text[:limit] + ("..." if len(text) > limit else "")
        return repr(self.redact(short))

    def json(self) -> Any:
        """The body decoded as JSON (None for an empty body); raises when it is not JSON."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.text())
        except ValueError as exc:
            kind = self.content_type or "no content type"
            raise HttpBlocError(
                f"{self.where}: {self.method} {self.url} answered {self.status} with a body "
                f"that is not JSON ({kind}; {exc}); it starts with {self.excerpt(120)}. "
                "Check the URL points at a JSON API"
            ) from None

    def server_message(self) -> str:
        """What the server said went wrong: ``detail`` / ``message`` / ``error``, or the body."""
        try:
            data = json.loads(self.text()) if self.body.strip() else None
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key in ("detail", "message", "error", "error_description", "title"):
                value = data.get(key)
                if isinstance(value, list):  # FastAPI's 422: [{"loc": [...], "msg": ...}]
                    value = "; ".join(_describe_problem(item) for item in value)
                elif isinstance(value, dict):
                    value = value.get("message") or json.dumps(value)
                if value:
                    return repr(self.redact(str(value)[:_EXCERPT]))
        return self.excerpt()

    def fail(self, what: str, fix: str = "") -> HttpBlocError:
        """An error for this reply's bad status, quoting the server's message."""
        reason = http.client.responses.get(self.status, "")
        message = (
            f"{self.where}: {what}: {self.method} {self.url} answered {self.status}"
            f"{' ' + reason if reason else ''}: {self.server_message()}"
        )
        return HttpBlocError(message + (f"; {fix}" if fix else ""))


def _describe_problem(item: Any) -> str:
    if isinstance(item, dict):
        location = ".".join(str(part) for part in item.get("loc", ()))
        text = str(item.get("msg", item))
        return f"{location}: {text}" if location else text
    return str(item)


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but never carries credential headers to another host."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(newurl).netloc != urlsplit(req.full_url).netloc:
            for name in list(new.headers):
                if name.lower() in ("authorization", "cookie", "proxy-authorization"):
                    del new.headers[name]
        return new


_opener = urllib.request.build_opener(_RedirectHandler())


def _with_params(url: str, params: Mapping[str, Any] | None) -> str:
    if not params:
        return url
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if item is None:
                continue
            text = ("true" if item else "false") if isinstance(item, bool) else str(item)
            pairs.append((str(name), text))
    if not pairs:
        return url
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(pairs)}" if parts.query else urlencode(pairs)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _split_userinfo(url: str) -> tuple[str, str | None]:
    """``url`` without ``user:pass@`` (urllib cannot send it) and the Basic header it means."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), (
        f"Basic {token}"
    )


@dataclass(frozen=True)
class _Failure:
    """Why an attempt got no answer, and whether another attempt may help."""

    reason: str
    fix: str
    retry: str  # "always", "idempotent" or "never"


def _classify(exc: BaseException, timeout: float) -> _Failure:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    if isinstance(exc, socket.gaierror):
        return _Failure(
            f"the host name could not be resolved ({exc.strerror or exc})",
            "check the host name in the URL and the machine's DNS",
            "never",
        )
    if isinstance(exc, ConnectionRefusedError):
        return _Failure(
            "the connection was refused (nothing listens on that host and port)",
            "check the port and that the service is running",
            "always",
        )
    if isinstance(exc, TimeoutError):
        return _Failure(
            f"no answer within the timeout of {timeout:g}s",
            "raise the bloc's timeout or check the service",
            "idempotent",
        )
    if isinstance(exc, ssl.SSLError):
        return _Failure(f"TLS failed ({exc.reason or exc})", "check the certificate", "never")
    if isinstance(exc, ConnectionError | http.client.HTTPException | OSError):
        detail = str(exc) or type(exc).__name__
        return _Failure(
            f"the connection failed ({detail})", "check the service and the network", "idempotent"
        )
    return _Failure(f"the request failed ({type(exc).__name__}: {exc})", "", "never")


def send(
    method: str,
    url: str,
    *,
    where: str,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 0,
    backoff: float = 0.5,
    idempotent: bool = True,
    max_wait: float = MAX_RETRY_WAIT,
    sleep: Callable[[float], None] = time.sleep,
) -> HttpReply:
    """Send one request and return the reply, whatever its status.

    Retried up to ``retries`` more times: a refused connection, 429 and 503 always (the
    server did not process the request); a timeout, a dropped connection, 500, 502 and 504 only
    when ``idempotent`` (repeating the request does no harm). Waits ``backoff * 2**n`` seconds,
    or what ``Retry-After`` asks, at most ``max_wait``. The last reply is returned even when its
    status is an error: the caller decides what a status means. Raises
    :class:`HttpBlocError` when no reply came at all.
    """
    method = method.upper()
    problem = _url_problem(url)
    if problem is not None:
        raise HttpBlocError(f"{where}: the URL {problem}")
    redact = Redactor()
    full_url = _with_params(url, params)
    redact.add_url(full_url)
    shown = mask_url(full_url)
    target, basic = _split_userinfo(full_url)
    all_headers = {"Accept": "application/json", "User-Agent": "th2etl"}
    if basic is not None:
        all_headers["Authorization"] = basic
    all_headers.update({str(k): str(v) for k, v in (headers or {}).items()})
    redact.add_headers(all_headers)
    data = None
    if json_body is not None:
        data = json.dumps(json_body, default=str).encode("utf-8")
        all_headers.setdefault("Content-Type", "application/json")

    attempts = retries + 1
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(target, data=data, method=method, headers=all_headers)
        started = time.perf_counter()
        failure: _Failure | None = None
        reply: HttpReply | None = None
        try:
            try:
                with _opener.open(request, timeout=timeout) as response:
                    reply = _reply(response, shown, method, where, redact)
            except urllib.error.HTTPError as error:  # a reply with an error status
                with error:
                    reply = _reply(error, shown, method, where, redact)
        except (OSError, http.client.HTTPException) as exc:
            failure = _classify(exc, timeout)
        elapsed = time.perf_counter() - started
        if reply is not None:
            logger.debug("%s: %s %s -> %d in %.3fs", where, method, shown, reply.status, elapsed)
            retryable = reply.status in _RETRY_ALWAYS or (
                idempotent and reply.status in _RETRY_IDEMPOTENT
            )
            if not retryable or attempt == attempts:
                return reply
            delay = backoff_delay(attempt, backoff, reply.headers.get("retry-after"), cap=max_wait)
            logger.warning(
                "%s: %s %s answered %d (attempt %d of %d); retrying in %.3gs",
                where,
                method,
                shown,
                reply.status,
                attempt,
                attempts,
                delay,
            )
        else:
            assert failure is not None
            logger.debug("%s: %s %s failed: %s", where, method, shown, failure.reason)
            retryable = failure.retry == "always" or (idempotent and failure.retry == "idempotent")
            if not retryable or attempt == attempts:
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                fix = f"; {failure.fix}" if failure.fix else ""
                raise HttpBlocError(
                    f"{where}: {method} {shown} failed{tries}: {redact(failure.reason)}{fix}"
                )
            delay = backoff_delay(attempt, backoff, cap=max_wait)
            logger.warning(
                "%s: %s %s failed (%s, attempt %d of %d); retrying in %.3gs",
                where,
                method,
                shown,
                redact(failure.reason),
                attempt,
                attempts,
                delay,
            )
        sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _reply(response: Any, shown: str, method: str, where: str, redact: Redactor) -> HttpReply:
    body = response.read()
    headers = {name.lower(): value for name, value in response.headers.items()}
    return HttpReply(
        status=response.status,
        url=shown,
        method=method,
        headers=headers,
        body=body,
        where=where,
        redact=redact,
    )
