"""URL and secret hygiene shared by the HTTP blocs and :mod:`th2etl.helpers.client`.

Nothing that may be a credential leaves th2etl in a log line or an error message: user info
(``user:pass@``) and the values of query parameters whose name looks like a credential
(``token=``, ``api_key=``, ``password=``, ``access_token=``, ...) are masked, and the values of
credential headers (``Authorization``, ``X-Api-Key``, ...) are redacted from any text built
from a reply.
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = [
    "MASK",
    "Redactor",
    "backoff_delay",
    "is_secret_name",
    "mask_url",
    "retry_after_seconds",
]

MASK = "***"

# A parameter or header name containing one of these carries a credential ...
_SECRET_PARTS = (
    "token",
    "password",
    "passwd",
    "secret",
    "apikey",
    "api_key",
    "credential",
    "signature",
    "authorization",
    "cookie",
)
# ... and so does one with one of these as a whole word (``key``, ``x-api-key``, ``auth``).
_SECRET_WORDS = frozenset({"key", "pass", "pwd", "auth", "sig", "jwt", "session", "sessionid"})
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


def is_secret_name(name: str) -> bool:
    """True for a query parameter or header name that carries a credential."""
    lowered = name.lower()
    if any(part in lowered for part in _SECRET_PARTS):
        return True
    return any(word in _SECRET_WORDS for word in _WORD_SPLIT.split(lowered))


def mask_url(url: str, *, keep_user: bool = False) -> str:
    """``url`` with its user info and the values of credential query parameters masked.

    ``keep_user`` masks only the password of the user info: for database URLs, whose user
    name is no secret (in a web API's URL a lone user name is often a token).

    >>> mask_url("https://bob:s3cret@api.example.com/v1?page=2&access_token=abc")
    'https://***@api.example.com/v1?page=2&access_token=***'
    >>> mask_url("postgresql://bob:s3cret@db/etl?password=s3cret", keep_user=True)
    'postgresql://bob:***@db/etl?password=***'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK  # not even a URL: show nothing rather than a credential
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        shown = (f"{user}:{MASK}" if colon else user) if keep_user else MASK
        netloc = f"{shown}@{host}"
    query = "&".join(_mask_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _mask_pair(pair: str) -> str:
    name, sep, value = pair.partition("=")
    if sep and value and is_secret_name(unquote(name)):
        return f"{name}={MASK}"
    return pair


class Redactor:
    """Replaces known secret strings in text with ``***``.

    Built per request from its headers, query parameters and URL, so that a server echoing a
    token back in its error body cannot put that token into a th2etl message.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        # Very short values would mask ordinary words; they are no real secret anyway.
        if len(secret) >= 4:
            self._secrets.add(secret)

    def add_headers(self, headers: Mapping[str, str]) -> None:
        """Remember the values of credential headers (and a bearer token on its own)."""
        for name, value in headers.items():
            if is_secret_name(name):
                self.add(value)
                scheme, _, credential = value.partition(" ")
                if credential and scheme.isalpha():
                    self.add(credential.strip())

    def add_url(self, url: str) -> None:
        """Remember the user info and the credential query values of ``url``."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return
        if parts.username:
            self.add(unquote(parts.username))
        if parts.password:
            self.add(unquote(parts.password))
        for pair in parts.query.split("&"):
            name, _, value = pair.partition("=")
            if value and is_secret_name(unquote(name)):
                self.add(value)
                self.add(unquote(value.replace("+", " ")))

    def __call__(self, text: str) -> str:
        # Longest first, so a secret that contains another is masked whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        return text


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for, in seconds, or None when absent or unreadable.

    The header is either a number of seconds or an HTTP date.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def backoff_delay(
    attempt: int, base: float, retry_after: str | None = None, *, cap: float = 30.0
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry).

    ``base * 2 ** (attempt - 1)``, unless the server sent ``Retry-After``, which wins; either
    way at most ``cap`` seconds, so a server cannot stall a run for an hour.
    """
    asked = retry_after_seconds(retry_after)
    delay = asked if asked is not None else base * 2 ** (attempt - 1)
    return min(max(0.0, delay), cap)
