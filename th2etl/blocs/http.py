"""HTTP blocs on the standard library: ``api_loader``, ``run_adk_agents``, ``refresh_webhooks``.

All three share :func:`th2etl.blocs._http.send`: ``timeout`` in seconds per HTTP request
(default 30; for these blocs it replaces the common per-attempt meaning, so a hung server fails
with a message naming the URL), ``http_retries`` with exponential backoff from
``http_backoff`` seconds that honours ``Retry-After`` (at most 30 s), and error messages that
name the bloc, the URL with its credentials masked, and the reason. Secrets belong in
``${env:NAME}`` references (``{"Authorization": "Bearer ${env:API_TOKEN}"}``); they never appear
in logs or messages.

The common ``retries`` key still retries the whole bloc; ``http_retries`` retries one request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin

from th2etl._urls import mask_url
from th2etl.blocs._http import DEFAULT_TIMEOUT, HttpReply, check_http_url, send
from th2etl.blocs.base import (
    COMMON_FIELDS,
    Bloc,
    ConfigField,
    LoaderBloc,
    TransformerBloc,
    collect,
)
from th2etl.blocs.registry import register_bloc
from th2etl.exceptions import BlocError, HttpBlocError, ValidationError
from th2etl.types import Row, Rows

if TYPE_CHECKING:
    from th2etl.pipelines.context import RunContext

__all__ = ["AgentReply", "ApiLoaderBloc", "RefreshWebhooksBloc", "RunAdkAgentsBloc", "final_text"]

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

_HTTP_FIELDS = (
    ConfigField(
        "headers",
        "dict",
        help="HTTP headers; put tokens in ${env:NAME} references, e.g. "
        "{'Authorization': 'Bearer ${env:API_TOKEN}'}",
    ),
    ConfigField(
        "http_retries",
        "int",
        default=2,
        help="Further attempts of one request after a refused connection, a timeout, 429 or 5xx",
        minimum=0,
    ),
    ConfigField(
        "http_backoff",
        "number",
        default=0.5,
        help="Seconds before the first HTTP retry, doubling; a Retry-After header wins (max 30 s)",
        minimum=0,
        unit="seconds",
    ),
)


# Replaces the common `timeout` (seconds per attempt of the whole bloc) for the HTTP blocs.
_REQUEST_TIMEOUT = ConfigField(
    "timeout",
    "number",
    default=DEFAULT_TIMEOUT,
    help="Seconds one HTTP request may take (connecting, or waiting for the next bytes)",
    exclusive_minimum=0,
    unit="seconds",
)


class _HttpBloc(Bloc):
    """What the three HTTP blocs share: config checks, the request timeout, ``where``."""

    @classmethod
    def all_fields(cls) -> tuple[ConfigField, ...]:
        common = (_REQUEST_TIMEOUT if f.name == "timeout" else f for f in COMMON_FIELDS)
        return (*cls.config_fields, *common)

    @classmethod
    def check_config(cls, config: dict[str, Any], where: str) -> None:
        for key in ("url", "base_url"):
            check_http_url(config.get(key), where, key)
        for name, value in (config.get("headers") or {}).items():
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValidationError(
                    f"{where}: header {name!r} must be a string, got {type(value).__name__}"
                )

    @property
    def timeout(self) -> None:
        # For HTTP blocs `timeout` bounds each request (the socket timeout), so a hung server
        # fails with a message naming the URL; the engine need not abandon the bloc's thread.
        return None

    @property
    def request_timeout(self) -> float:
        """Seconds one HTTP request may take: the ``timeout`` key, default 30."""
        return float(self.config.get("timeout", DEFAULT_TIMEOUT))

    @property
    def where(self) -> str:
        return f"bloc {self.name!r} ({self.bloc_type})"

    def _send(
        self, method: str, url: str, *, where: str | None = None, **options: Any
    ) -> HttpReply:
        headers = {str(k): str(v) for k, v in (self.config.get("headers") or {}).items()}
        return send(
            method,
            url,
            where=where or self.where,
            headers=headers,
            timeout=self.request_timeout,
            retries=int(self.config["http_retries"]),
            backoff=float(self.config["http_backoff"]),
            **options,
        )


def _status_hint(status: int) -> str:
    if status in (401, 403):
        return "check the credentials in headers (e.g. 'Bearer ${env:API_TOKEN}')"
    if status == 404:
        return "check the URL"
    if status == 429:
        return "the server limits the request rate; raise http_retries or http_backoff"
    if status >= 500:
        return "the server failed; try later or raise http_retries"
    return "check the request (method, params, json)"


# --- api_loader -------------------------------------------------------------------------------


@register_bloc
class ApiLoaderBloc(_HttpBloc, LoaderBloc):
    """Loads rows from a JSON web API.

    A JSON array of objects becomes those rows, one object becomes one row, and any other
    value ``v`` becomes the row ``{"value": v}``. ``records_path`` (``"data.items"``) first picks
    the list inside the reply; a number in the path indexes a list (``"results.0.rows"``).

    ``pagination`` follows the API's pages, each page's records passed on as a batch while the
    next page is fetched:

    * ``{"type": "page", "param": "page", "start": 1}``: the page number in a query parameter,
      counting up from ``start`` until a page has no records (or fewer than ``size`` records,
      when ``size`` is given; ``size_param`` then sends it, e.g. ``"per_page"``);
    * ``{"type": "cursor", "param": "cursor", "cursor_path": "meta.next"}``: the value at
      ``cursor_path`` in a reply is sent in ``param`` for the next page, until it is missing,
      null or empty;
    * ``{"type": "next_link"}``: the URL of the ``Link: <...>; rel="next"`` header, or of the
      body field at ``next_path`` when given, until there is none (relative URLs are resolved
      against the page's own URL; ``params`` go with the first request only).

    ``max_pages`` (default 1000) guards against an API that never stops: reaching it fails the
    bloc, naming the limit, rather than silently dropping the rest.
    """

    bloc_type = "api_loader"
    summary = "Loads rows from a JSON web API (GET or any method), with retries and Retry-After."
    config_fields = (
        ConfigField("url", "str", required=True, help="The API endpoint URL (http or https)"),
        ConfigField("method", "str", default="GET", help=f"One of {', '.join(_METHODS)}"),
        ConfigField("params", "dict", help="URL query parameters"),
        ConfigField("json", "any", help="The JSON request body"),
        ConfigField(
            "records_path",
            "str",
            help="Dotted path to the list of records in the reply, e.g. 'data.items'",
        ),
        ConfigField(
            "pagination",
            "dict",
            help="Follow the API's pages: {'type': 'page' | 'cursor' | 'next_link', ...}; "
            "see the api_loader section of the README",
        ),
        ConfigField(
            "max_pages",
            "int",
            default=1000,
            help="Pages followed at most; more fails the bloc",
            minimum=1,
        ),
        *_HTTP_FIELDS,
    )

    @classmethod
    def check_config(cls, config: dict[str, Any], where: str) -> None:
        super().check_config(config, where)
        pagination = config.get("pagination")
        if isinstance(pagination, dict) and "${" not in repr(pagination):
            _check_pagination(pagination, where)
        method = config.get("method", "GET")
        if isinstance(method, str) and "${" not in method and method.upper() not in _METHODS:
            raise ValidationError(
                f"{where}: config key 'method' is {method!r}; use one of {', '.join(_METHODS)}"
            )
        path = config.get("records_path")
        if isinstance(path, str) and "" in path.split("."):
            raise ValidationError(
                f"{where}: config key 'records_path' {path!r} has an empty step; "
                "write keys separated by single dots, e.g. 'data.items'"
            )

    def run(self, context: RunContext, rows: Rows) -> Rows:
        return collect(self.stream(context, [rows]))

    def stream(self, context: RunContext, batches: Iterable[Rows]) -> Iterator[Rows]:
        method = self.config["method"].upper()
        pagination: dict[str, Any] = self.config.get("pagination") or {}
        kind = pagination.get("type")
        limit = int(self.config["max_pages"])
        url = self.config["url"]
        params: dict[str, Any] = dict(self.config.get("params") or {})
        number = int(pagination.get("start", 1))
        size = pagination.get("size")
        if kind == "page":
            params[pagination.get("param", "page")] = number
            if size is not None and pagination.get("size_param"):
                params[pagination["size_param"]] = size
        for pages in range(1, limit + 1):
            if context.cancel_requested:
                raise BlocError(f"{self.where}: the run was cancelled after {pages - 1} page(s)")
            reply = self._send(
                method,
                url,
                params=params or None,
                json_body=self.config.get("json"),
                # A loader reads: repeating its request is harmless whatever the method.
                idempotent=True,
            )
            if not reply.ok:
                raise reply.fail("the API answered with an error", _status_hint(reply.status))
            data = reply.json()
            page = data
            path = self.config.get("records_path")
            if path:
                page = _pick(data, path, reply)
            records = _to_rows(page)
            yield records
            if kind == "page":
                if not records or (size is not None and len(records) < int(size)):
                    return
                number += 1
                params[pagination.get("param", "page")] = number
            elif kind == "cursor":
                cursor = _lookup(data, pagination["cursor_path"])
                if cursor in (None, ""):
                    return
                params[pagination.get("param", "cursor")] = cursor
            elif kind == "next_link":
                link = (
                    _lookup(data, pagination["next_path"])
                    if pagination.get("next_path")
                    else _next_link(reply.headers.get("link", ""))
                )
                if not link:
                    return
                url, params = urljoin(url, str(link)), {}
            else:
                return
        raise BlocError(
            f"{self.where}: the API still had more pages after max_pages ({limit}); raise "
            "max_pages if the data is that large, or check the pagination settings (an API that "
            "repeats its last page never ends)"
        )


_PAGINATION_KEYS = {
    "page": ({"type", "param", "start", "size", "size_param"}, ()),
    "cursor": ({"type", "param", "cursor_path"}, ("cursor_path",)),
    "next_link": ({"type", "next_path"}, ()),
}


def _check_pagination(pagination: dict[str, Any], where: str) -> None:
    kind = pagination.get("type")
    if kind not in _PAGINATION_KEYS:
        raise ValidationError(
            f"{where}: pagination type is {kind!r}; use 'page' (a page number), 'cursor' (a "
            "value from each reply) or 'next_link' (a Link header or a body field)"
        )
    allowed, required = _PAGINATION_KEYS[kind]
    unknown = sorted(set(pagination) - allowed)
    if unknown:
        raise ValidationError(
            f"{where}: pagination of type {kind!r} has no key {unknown[0]!r}; its keys: "
            f"{', '.join(sorted(allowed))}"
        )
    for key in required:
        if not isinstance(pagination.get(key), str) or not pagination[key]:
            raise ValidationError(
                f"{where}: pagination of type {kind!r} needs {key!r}, the dotted path of the "
                "next cursor in each reply, e.g. 'meta.next_cursor'"
            )
    for key in ("start", "size"):
        value = pagination.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValidationError(
                f"{where}: pagination key {key!r} must be a whole number, got {value!r}"
            )


def _lookup(data: Any, path: str) -> Any:
    """The value at a dotted path, or None when any step is missing."""
    for step in path.split("."):
        if isinstance(data, dict):
            data = data.get(step)
        elif isinstance(data, list) and step.isdigit() and int(step) < len(data):
            data = data[int(step)]
        else:
            return None
    return data


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)")


def _next_link(header: str) -> str | None:
    """The URL with ``rel="next"`` in a ``Link`` header (RFC 8288), or None."""
    for match in _LINK.finditer(header):
        for parameter in match.group(2).split(";"):
            name, _, value = parameter.strip().partition("=")
            if name.lower() == "rel" and "next" in value.strip('"').lower().split():
                return match.group(1)
    return None


def _pick(data: Any, path: str, reply: HttpReply) -> Any:
    walked: list[str] = []
    for step in path.split("."):
        here = ".".join(walked) or "the top level"
        if isinstance(data, dict):
            if step not in data:
                keys = ", ".join(map(str, list(data)[:20])) or "none"
                raise HttpBlocError(
                    f"{reply.where}: records_path {path!r} not found in the reply of "
                    f"{reply.method} {reply.url}: no key {step!r} at {here} (keys there: {keys}); "
                    "fix records_path"
                )
            data = data[step]
        elif isinstance(data, list):
            try:
                data = data[int(step)]
            except (ValueError, IndexError):
                raise HttpBlocError(
                    f"{reply.where}: records_path {path!r} not found in the reply of "
                    f"{reply.method} {reply.url}: {here} is a list of {len(data)} items, "
                    f"and {step!r} is not an index in it; fix records_path"
                ) from None
        else:
            raise HttpBlocError(
                f"{reply.where}: records_path {path!r} not found in the reply of "
                f"{reply.method} {reply.url}: {here} is {type(data).__name__} {data!r:.60}, "
                f"which has no {step!r}; fix records_path"
            )
        walked.append(step)
    return data


def _to_rows(data: Any) -> Rows:
    if data is None:
        return []
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return [item if isinstance(item, dict) else {"value": item} for item in data]
    return [{"value": data}]


# --- run_adk_agents ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentReply:
    """One answer of an ADK agent: its session, final text and every event."""

    session_id: str
    text: str
    events: list[Any]


def final_text(events: list[Any]) -> str | None:
    """The agent's final text: the text parts of the last event that has any.

    Partial (streamed) events, thoughts and user-role content (function responses) are skipped.
    """
    for event in reversed(events):
        if not isinstance(event, dict) or event.get("partial"):
            continue
        content = event.get("content")
        if not isinstance(content, dict) or content.get("role") == "user":
            continue
        texts = [
            part["text"]
            for part in content.get("parts") or ()
            if isinstance(part, dict)
            and isinstance(part.get("text"), str)
            and not part.get("thought")
        ]
        if texts:
            return "".join(texts)
    return None


_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_APP_NAME = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class _Template:
    """``message_text`` split into literal text and ``{field}`` placeholders."""

    pieces: tuple[str | tuple[str], ...]

    @classmethod
    def parse(cls, text: str, where: str) -> _Template:
        pieces: list[str | tuple[str]] = []
        position = 0
        for match in _TEMPLATE_TOKEN.finditer(text):
            pieces.append(text[position : match.start()])
            token = match.group(0)
            if token in ("{{", "}}"):
                pieces.append(token[0])
            elif match.group(1) is not None and match.group(1).strip():
                pieces.append((match.group(1).strip(),))
            else:
                raise ValidationError(
                    f"{where}: config key 'message_text' has {token!r} at position "
                    f"{match.start()}, which is no placeholder; write {{column}} to insert a "
                    "column of the input row, and {{ or }} for a literal brace"
                )
            position = match.end()
        pieces.append(text[position:])
        return cls(tuple(piece for piece in pieces if piece != ""))

    @property
    def fields(self) -> list[str]:
        return [piece[0] for piece in self.pieces if isinstance(piece, tuple)]

    def render(self, row: Row, number: int, where: str) -> str:
        out: list[str] = []
        for piece in self.pieces:
            if isinstance(piece, str):
                out.append(piece)
            elif piece[0] in row:
                value = row[piece[0]]
                out.append("" if value is None else str(value))
            else:
                columns = ", ".join(map(str, row)) or "none"
                raise BlocError(
                    f"{where}: message_text uses {{{piece[0]}}}, but input row {number} has no "
                    f"column {piece[0]!r} (columns: {columns}); fix the placeholder or the rows "
                    "of source_bloc. Nothing was sent"
                )
        return "".join(out)


@register_bloc
class RunAdkAgentsBloc(_HttpBloc, TransformerBloc):
    """Runs an agent of a Google ADK API server (``adk api_server``).

    For each message: ``POST {base_url}/apps/{agent_id}/users/{user_id}/sessions`` creates a
    session, then ``POST {base_url}/run`` sends the message; the reply is the list of the run's
    events, and the agent's final text is in the last event with ``content.parts[].text``.

    Without input rows, one message is sent and one row comes out: ``agent_id``, ``user_id``,
    ``session_id``, ``message``, ``reply`` and ``events``. With input rows, one message is sent
    per row (``{column}`` placeholders in ``message_text`` take the row's values; ``{{`` and
    ``}}`` are literal braces), at most ``max_concurrency`` at a time, each in its own session,
    and every row comes out with the reply in ``reply_column``.
    """

    bloc_type = "run_adk_agents"
    summary = "Sends a message to a Google ADK agent (adk api_server), or one per input row."
    # One message per row: batches can go one at a time. An agent's calls may act on the world,
    # so it starts only after the earlier stages finished (streams_safely stays False).
    per_batch = True
    config_fields = (
        ConfigField("base_url", "str", required=True, help="The base URL of the agent API"),
        ConfigField("agent_id", "str", required=True, help="The ID (app name) of the agent"),
        ConfigField("user_id", "str", required=True, help="The user's ID on the agent server"),
        ConfigField(
            "message_text",
            "str",
            required=True,
            help="The message; {column} placeholders take each input row's values",
        ),
        ConfigField(
            "reply_column",
            "str",
            default="agent_reply",
            help="The column that receives the reply, for each input row",
        ),
        ConfigField(
            "max_concurrency",
            "int",
            default=4,
            help="Input rows sent to the agent at once",
            minimum=1,
        ),
        *_HTTP_FIELDS,
    )

    @classmethod
    def check_config(cls, config: dict[str, Any], where: str) -> None:
        super().check_config(config, where)
        agent = config.get("agent_id")
        if isinstance(agent, str) and "${" not in agent and not _APP_NAME.fullmatch(agent):
            raise ValidationError(
                f"{where}: config key 'agent_id' is {agent!r}; an ADK agent ID (its folder "
                "name on the server) has only letters, digits and underscores"
            )
        text = config.get("message_text")
        if isinstance(text, str) and "${" not in text:
            _Template.parse(text, where)
        if config.get("reply_column") == "":
            raise ValidationError(f"{where}: config key 'reply_column' must not be empty")

    @property
    def where(self) -> str:
        return f"{super().where}, agent {self.config['agent_id']!r} at {mask_url(self._base)}"

    @property
    def _base(self) -> str:
        return str(self.config["base_url"]).rstrip("/")

    def run(self, context: RunContext, rows: Rows) -> Rows:
        template = _Template.parse(self.config["message_text"], self.where)
        if not rows and not template.fields:
            message = self.config["message_text"].replace("{{", "{").replace("}}", "}")
            reply = self.ask(message, context)
            return [
                {
                    "agent_id": self.config["agent_id"],
                    "user_id": self.config["user_id"],
                    "session_id": reply.session_id,
                    "message": message,
                    "reply": reply.text,
                    "events": reply.events,
                }
            ]
        # Every message is built before the first is sent: a bad row sends nothing.
        messages = [template.render(row, n, self.where) for n, row in enumerate(rows, start=1)]
        replies = self._ask_all(messages, context)
        column = self.config["reply_column"]
        return [{**row, column: reply.text} for row, reply in zip(rows, replies, strict=True)]

    def _ask_all(self, messages: list[str], context: RunContext) -> list[AgentReply]:
        if not messages:
            return []
        workers = min(int(self.config["max_concurrency"]), len(messages))
        with ThreadPoolExecutor(workers, thread_name_prefix=f"th2etl-{self.name}") as pool:
            futures: list[Future[AgentReply]] = [
                pool.submit(self.ask, message, context, f"{self.where}, row {number}")
                for number, message in enumerate(messages, start=1)
            ]
            _, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:  # one row failed: send no more
                future.cancel()
        for future in futures:  # the first failed row, in row order
            error = None if future.cancelled() else future.exception()
            if error is not None:
                raise error
        return [future.result() for future in futures]

    def ask(self, message: str, context: RunContext, where: str | None = None) -> AgentReply:
        """Send ``message`` in a new session and return the agent's reply."""
        where = where or self.where
        if context.cancel_requested:
            raise BlocError(f"{where}: the run was cancelled before this message was sent")
        agent, user = self.config["agent_id"], self.config["user_id"]
        session_url = (
            f"{self._base}/apps/{quote(agent, safe='')}/users/{quote(user, safe='')}/sessions"
        )
        created = self._send("POST", session_url, where=where, json_body={})
        if not created.ok:
            hint = (
                f"check agent_id: GET {mask_url(self._base)}/list-apps lists the server's agents"
                if created.status == 404
                else _status_hint(created.status)
            )
            raise created.fail("creating a session failed", hint)
        session = created.json()
        session_id = session.get("id") if isinstance(session, dict) else None
        if not isinstance(session_id, str) or not session_id:
            raise HttpBlocError(
                f"{where}: POST {created.url} answered without a session 'id': "
                f"{created.excerpt(120)}; is base_url an ADK API server (adk api_server)?"
            )
        # The Python ADK server reads snake_case or camelCase; the TypeScript, Java and Go
        # servers read camelCase; ADK Python releases before the camelCase aliases read only
        # snake_case. Every server ignores the keys it does not know, so both are sent.
        new_message = {"role": "user", "parts": [{"text": message}]}
        body = {
            "app_name": agent,
            "user_id": user,
            "session_id": session_id,
            "new_message": new_message,
            "appName": agent,
            "userId": user,
            "sessionId": session_id,
            "newMessage": new_message,
        }
        # Running an agent twice is not harmless: only a refused connection, 429 or 503 retry.
        ran = self._send("POST", f"{self._base}/run", where=where, json_body=body, idempotent=False)
        if not ran.ok:
            hint = (
                f"the server does not know agent {agent!r} or session {session_id!r}"
                if ran.status == 404
                else _status_hint(ran.status)
            )
            raise ran.fail(f"running the agent in session {session_id!r} failed", hint)
        events = ran.json()
        if not isinstance(events, list):
            raise HttpBlocError(
                f"{where}: POST {ran.url} answered {type(events).__name__} where the ADK API "
                f"server returns a list of events: {ran.excerpt(120)}"
            )
        text = final_text(events)
        if text is None:
            raise HttpBlocError(
                f"{where}: the agent answered {len(events)} event(s) in session {session_id!r} "
                "but no text reply (no event with content.parts[].text); check the agent's "
                "instructions and tools on the server"
            )
        return AgentReply(session_id=session_id, text=text, events=events)


# --- refresh_webhooks -------------------------------------------------------------------------


@register_bloc
class RefreshWebhooksBloc(_HttpBloc, TransformerBloc):
    """``POST {url}`` with ``{"user_id": ...}``; one row with the status and the reply.

    The reply is its JSON when it is JSON, else its text. A status other than 2xx fails the
    bloc, quoting the body's first bytes.
    """

    bloc_type = "refresh_webhooks"
    summary = "Asks a webhook service to refresh a user's webhooks (POST with the user_id)."
    config_fields = (
        ConfigField("url", "str", required=True, help="The API endpoint for refreshing webhooks"),
        ConfigField("user_id", "any", required=True, help="The user's ID (a string or a number)"),
        *_HTTP_FIELDS,
    )

    @classmethod
    def check_config(cls, config: dict[str, Any], where: str) -> None:
        super().check_config(config, where)
        user = config.get("user_id")
        if isinstance(user, bool) or not isinstance(user, str | int):
            raise ValidationError(
                f"{where}: config key 'user_id' must be a string or an integer, got {user!r}"
            )

    def run(self, context: RunContext, rows: Rows) -> Rows:
        user = self.config["user_id"]
        reply = self._send(
            "POST", self.config["url"], json_body={"user_id": user}, idempotent=False
        )
        if not reply.ok:
            raise HttpBlocError(
                f"{self.where}: POST {reply.url} answered {reply.status}; the body starts with "
                f"{reply.excerpt(200)}; {_status_hint(reply.status)}"
            )
        try:
            answer: Any = reply.json()
        except HttpBlocError:
            answer = reply.redact(reply.text())
        return [{"url": reply.url, "user_id": user, "status": reply.status, "reply": answer}]
