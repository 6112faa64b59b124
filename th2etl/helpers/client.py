"""HttpClient: a small JSON client for any web API (the ``th2etl[http]`` extra, on requests).

>>> from th2etl.helpers.client import HttpClient
>>> client = HttpClient(base_url="https://jsonplaceholder.typicode.com")
>>> posts = client.get("/posts")  # doctest: +SKIP
>>> created = client.post("/posts", json_data={"title": "foo"})  # doctest: +SKIP

The API, kept stable for the code built on it:

* ``HttpClient(base_url, auth_token=None, *, timeout=30.0, retries=2, backoff=0.5,
  headers=None)``; ``auth_token`` is sent as ``Authorization: Bearer <token>``.
* ``get(path="", params=None, headers=None)``,
  ``post/put/patch(path="", json_data=None, params=None, data=None, headers=None)``,
  ``delete(path="", params=None, json_data=None, headers=None)`` and the general
  ``request(method, path="", ...)``. Each returns the reply decoded: JSON as Python values, any
  other body as text, an empty body as None.
* ``path`` is joined to ``base_url`` (``"/posts"`` and ``"posts"`` are the same); a full
  ``http(s)://`` URL is used as it is.
* Idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE) are retried ``retries`` times after a
  connection error, a timeout, 429, 500, 502, 503 or 504, waiting ``backoff * 2**n`` seconds or
  what ``Retry-After`` asks (at most 30 s). POST and PATCH are retried only when the server
  surely did not process them (a refused connection, 429, 503).
* A 4xx/5xx reply raises :class:`HttpError` (``status``, ``url``, ``body``); no reply at all
  raises :class:`HttpConnectionError`. Both are :class:`~th2etl.exceptions.Th2etlError`, and
  their messages never show the token, a password or a credential query parameter.
* ``close()``, or use the client as a context manager, to release its connections.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from th2etl._extras import require_extra
from th2etl._urls import Redactor, backoff_delay, is_secret_name, mask_url
from th2etl.exceptions import Th2etlError

if TYPE_CHECKING:
    import requests
else:
    requests = require_extra("requests", "http", "th2etl.helpers.client.HttpClient")

__all__ = ["HttpClient", "HttpConnectionError", "HttpError"]

logger = logging.getLogger(__name__)

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_RETRY_ALWAYS = frozenset({429, 503})
_RETRY_IDEMPOTENT = frozenset({500, 502, 504})
_MAX_WAIT = 30.0


class HttpError(Th2etlError):
    """The server answered 4xx or 5xx: ``status``, ``url`` (credentials masked), ``body``."""

    def __init__(self, status: int, url: str, body: Any, *, method: str = "GET") -> None:
        self.status = status
        self.url = url
        self.body = body
        self.method = method
        shown = body if isinstance(body, str) else repr(body)
        shown = shown if len(shown) <= 300 else shown[:300] + "..."
        super().__init__(f"{method} {url} answered {status}: {shown}")


class HttpConnectionError(Th2etlError, ConnectionError):
    """No answer: the host did not resolve, refused the connection, or timed out."""

    def __init__(self, message: str, *, url: str, method: str = "GET") -> None:
        super().__init__(message)
        self.url = url
        self.method = method


class HttpClient:
    """A JSON client for one web API; see the module docstring for the full contract."""

    def __init__(
        self,
        base_url: str,
        auth_token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.5,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"HttpClient: base_url must be an http:// or https:// URL, got "
                f"{mask_url(str(base_url))!r}; e.g. HttpClient('https://api.example.com')"
            )
        if retries < 0:
            raise ValueError(f"HttpClient: retries must be 0 or more, got {retries}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._session = requests.Session()
        self._session.headers["Accept"] = "application/json"
        if headers:
            self._session.headers.update(headers)
        if auth_token:
            self._session.headers["Authorization"] = f"Bearer {auth_token}"
        self._redact = Redactor([auth_token] if auth_token else [])
        self._redact.add_headers(dict(headers or {}))

    # --- the verbs ------------------------------------------------------------------------------

    def get(
        self,
        path: str = "",
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """GET ``path``; the decoded reply."""
        return self.request("GET", path, params=params, headers=headers)

    def post(
        self,
        path: str = "",
        json_data: Any = None,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """POST ``json_data`` (or form/bytes ``data``) to ``path``; the decoded reply."""
        return self.request(
            "POST", path, json_data=json_data, params=params, data=data, headers=headers
        )

    def put(
        self,
        path: str = "",
        json_data: Any = None,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """PUT ``json_data`` to ``path``; the decoded reply."""
        return self.request(
            "PUT", path, json_data=json_data, params=params, data=data, headers=headers
        )

    def patch(
        self,
        path: str = "",
        json_data: Any = None,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """PATCH ``path`` with ``json_data``; the decoded reply."""
        return self.request(
            "PATCH", path, json_data=json_data, params=params, data=data, headers=headers
        )

    def delete(
        self,
        path: str = "",
        params: Mapping[str, Any] | None = None,
        json_data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """DELETE ``path``; the decoded reply (often None)."""
        return self.request("DELETE", path, params=params, json_data=json_data, headers=headers)

    def request(
        self,
        method: str,
        path: str = "",
        *,
        params: Mapping[str, Any] | None = None,
        json_data: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request (with retries) and return the decoded reply; see the module doc."""
        method = method.upper()
        url = self.url_for(path)
        redact = Redactor()
        redact.add_headers(headers or {})
        for name, value in (params or {}).items():
            if is_secret_name(str(name)):
                redact.add(str(value))
        redact.add_url(url)
        idempotent = method in _IDEMPOTENT
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    json=json_data,
                    data=data,
                    headers=dict(headers) if headers else None,
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                shown = mask_url(url if exc.request is None else str(exc.request.url))
                reason, retry = _describe(exc, self.timeout)
                if (retry == "always" or (retry == "idempotent" and idempotent)) and (
                    attempt < attempts
                ):
                    delay = backoff_delay(attempt, self.backoff, cap=_MAX_WAIT)
                    logger.warning(
                        "%s %s failed (%s); retrying in %.3gs", method, shown, reason, delay
                    )
                    self._sleep(delay)
                    continue
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                raise HttpConnectionError(
                    self._redact(redact(f"{method} {shown} failed{tries}: {reason}")),
                    url=shown,
                    method=method,
                ) from None
            with response:
                shown = mask_url(response.url or url)
                status = response.status_code
                logger.debug("%s %s -> %d", method, shown, status)
                retryable = status in _RETRY_ALWAYS or (idempotent and status in _RETRY_IDEMPOTENT)
                if retryable and attempt < attempts:
                    delay = backoff_delay(
                        attempt, self.backoff, response.headers.get("Retry-After"), cap=_MAX_WAIT
                    )
                    logger.warning(
                        "%s %s answered %d; retrying in %.3gs", method, shown, status, delay
                    )
                    self._sleep(delay)
                    continue
                body = _decode(response)
                if status >= 400:
                    if isinstance(body, str):
                        body = self._redact(redact(body))
                    raise HttpError(status, shown, body, method=method)
                return body
        raise AssertionError("unreachable")  # pragma: no cover

    def url_for(self, path: str) -> str:
        """The full URL of ``path`` (a full http(s) URL is kept as it is)."""
        if path.startswith(("http://", "https://")):
            return path
        if not path:
            return self.base_url
        return f"{self.base_url}/{path.lstrip('/')}"

    # --- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the pooled connections."""
        self._session.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HttpClient(base_url={mask_url(self.base_url)!r})"


def _decode(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _describe(exc: requests.RequestException, timeout: float) -> tuple[str, str]:
    """A reason for a message, and when a retry may help: 'always', 'idempotent' or 'never'."""
    text = str(exc)
    if isinstance(exc, requests.Timeout):
        if isinstance(exc, requests.ConnectTimeout):
            return f"could not connect within the timeout of {timeout:g}s", "always"
        return f"no answer within the timeout of {timeout:g}s", "idempotent"
    if isinstance(exc, requests.ConnectionError):
        if (
            "Name or service not known" in text
            or "NameResolutionError" in text
            or ("getaddrinfo failed" in text or "nodename nor servname" in text)
        ):
            return "the host name could not be resolved; check base_url", "never"
        if "Connection refused" in text or "ConnectionRefusedError" in text:
            return "the connection was refused; check the port and that the service runs", "always"
        return "the connection failed (the server closed it or the network is down)", "idempotent"
    return f"the request could not be sent ({type(exc).__name__})", "never"
