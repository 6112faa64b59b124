"""HTML building blocks of the dashboard: the page layout, escaping, badges, times, configs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any

from starlette.responses import HTMLResponse

from th2etl import __version__

__all__ = ["CSP", "badge", "config_view", "h", "moment", "page", "table"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""The dashboard loads nothing but its own assets, and runs no inline script."""

_SECRET_KEY = re.compile(r"pass(word)?|secret|token|api[_-]?key|credential|auth", re.IGNORECASE)
_REFERENCE = re.compile(r"^\$\{(env|var|run):[^}]*\}$")


def h(value: Any) -> str:
    """``value`` as escaped HTML text (None as an empty string)."""
    return "" if value is None else escape(str(value))


def moment(value: datetime | None, *, zone: bool = False) -> str:
    """A ``<time>`` element: in UTC, or in ``value``'s own zone (name and offset) when ``zone``."""
    if value is None:
        return '<span class="muted">\u2014</span>'
    if zone:
        text = value.strftime("%Y-%m-%d %H:%M %Z (%z)")
    else:
        text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f'<time datetime="{h(value.isoformat())}">{h(text)}</time>'


def badge(status: Any) -> str:
    text = str(status)
    return f'<span class="badge {h(text)}" data-status="{h(text)}">{h(text)}</span>'


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], *, empty: str) -> str:
    """A table of already-escaped cells, in a box that scrolls sideways on a narrow screen."""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="muted">{h(empty)}</p>'
    head = "".join(f"<th>{h(title)}</th>" for title in headers)
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _masked(key: str, value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _masked(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(key, item) for item in value]
    if _SECRET_KEY.search(key) and isinstance(value, str) and value:
        if _REFERENCE.match(value):
            return value
        return "\u2022\u2022\u2022\u2022\u2022\u2022 (a literal secret; store ${env:NAME} instead)"
    return value


def config_view(config: Mapping[str, Any]) -> str:
    """A bloc's config as stored: references (``${env:PASSWORD}``) as written, a literal value
    under a secret-looking key (password, token, api_key, ...) masked."""
    if not config:
        return '<span class="muted">no config</span>'
    shown = json.dumps(_masked("", dict(config)), indent=2, ensure_ascii=False, default=str)
    return f'<pre class="config">{h(shown)}</pre>'


_NAV = (("/ui", "Overview"), ("/ui/schedulers", "Schedulers"), ("/docs", "API"))


def page(
    title: str,
    body: str,
    *,
    active: str = "",
    status: int = 200,
    logout: bool = False,
) -> HTMLResponse:
    """The page layout around ``body`` (already HTML), with the dashboard's headers."""
    links = "".join(
        f'<a href="{url}"{" aria-current=page" if url == active else ""}>{name}</a>'
        for url, name in _NAV
    )
    if logout:
        links += (
            '<form method="post" action="/ui/logout" class="logout">'
            '<button type="submit">Log out</button></form>'
        )
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{h(title)} \u00b7 th2etl</title>"
        '<link rel=icon href="/ui/static/favicon.svg" type="image/svg+xml">'
        '<link rel=stylesheet href="/ui/static/ui.css">'
        '<script src="/ui/static/ui.js" defer></script></head><body>'
        f'<header><a class=brand href="/ui">th2etl</a><nav>{links}</nav></header>'
        f'<main><h1>{h(title)}</h1><p id="flash" class="flash" hidden></p>{body}</main>'
        f'<footer class="muted">th2etl {h(__version__)}</footer></body></html>'
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Content-Security-Policy": CSP,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )
