"""Real HTTP servers on 127.0.0.1 for the HTTP bloc and HttpClient tests.

:class:`LocalServer` runs a stdlib ``ThreadingHTTPServer`` on a free port in a thread and
answers every request with what a test's ``app(request) -> Reply`` function returns; it records
the requests it saw. :class:`AdkServer` is such an app speaking the protocol of the Google ADK
API server (``adk api_server``): sessions, ``/run``, and its error replies.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    """dict/list/number: sent as JSON; str/bytes: sent as is."""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (cut short when the server stops)."""


App = Callable[[Request], Reply]


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 that answers with ``app``."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.requests: list[Request] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with server._lock:
                    server.requests.append(request)
                reply = server.app(request)
                if reply.delay and server._stopping.wait(reply.delay):
                    return
                payload = reply.body
                if isinstance(payload, str):
                    data = payload.encode()
                    content_type = "text/plain; charset=utf-8"
                elif isinstance(payload, bytes):
                    data, content_type = payload, "application/octet-stream"
                elif payload is None:
                    data, content_type = b"", "application/json"
                else:
                    data, content_type = json.dumps(payload).encode(), "application/json"
                self.send_response(reply.status)
                headers = {"Content-Type": content_type, **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # the default 5 drops connections of concurrent clients

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up (timeout tests) is expected

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]


@contextmanager
def serve(app: App) -> Iterator[LocalServer]:
    server = LocalServer(app).start()
    try:
        yield server
    finally:
        server.stop()


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def sequence(*replies: Reply) -> App:
    """An app answering with ``replies`` in turn, then repeating the last one."""
    queue = list(replies)
    lock = threading.Lock()

    def app(request: Request) -> Reply:
        with lock:
            return queue.pop(0) if len(queue) > 1 else queue[0]

    return app


# --- a Google ADK API server (adk api_server) ---------------------------------------------------


def _pick(body: dict[str, Any], snake: str, camel: str) -> Any:
    # The Python ADK server's models accept the field name or its camelCase alias.
    return body.get(camel, body.get(snake))


class AdkServer:
    """The ADK API server endpoints this project uses, with ADK's error replies.

    Agents: ``echo_agent`` answers ``echo: <text>`` after a tool call; ``silent_agent`` answers
    only a tool call (no text); ``broken_agent`` fails with 500; ``forgetful_agent`` loses its
    sessions (``/run`` answers 404 Session not found). Any other app name is unknown (404).
    ``token`` set: every request needs ``Authorization: Bearer <token>`` (401 otherwise).
    ``barrier`` set: each ``/run`` waits on it, proving that runs overlap. ``echo_agents`` are
    more names that behave like ``echo_agent``.
    """

    AGENTS = ("echo_agent", "silent_agent", "broken_agent", "forgetful_agent")

    def __init__(
        self,
        token: str | None = None,
        barrier: threading.Barrier | None = None,
        echo_agents: tuple[str, ...] = (),
    ) -> None:
        self.agents = (*self.AGENTS, *echo_agents)
        self.token = token
        self.barrier = barrier
        self.sessions: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.run_bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Reply:
        if self.token is not None and request.headers.get("authorization") != (
            f"Bearer {self.token}"
        ):
            return Reply(401, {"detail": "Missing or invalid credentials"})
        parts = request.path.strip("/").split("/")
        try:
            body = request.json()
        except ValueError:
            return Reply(422, {"detail": [{"loc": ["body"], "msg": "JSON decode error"}]})
        if request.method == "GET" and parts == ["list-apps"]:
            return Reply(200, list(self.agents))
        if (
            request.method == "POST"
            and len(parts) == 5
            and parts[0] == "apps"
            and parts[2] == "users"
            and parts[4] == "sessions"
        ):
            return self._create_session(parts[1], parts[3], body)
        if request.method == "POST" and parts == ["run"]:
            return self._run(body)
        return Reply(404, {"detail": "Not Found"})

    def _create_session(self, app: str, user: str, body: Any) -> Reply:
        if app not in self.agents:
            return Reply(404, {"detail": f"App not found: {app}"})
        session_id = f"s-{next(self._ids)}"
        state = (body or {}).get("state") or {}
        session = {
            "id": session_id,
            "appName": app,
            "userId": user,
            "state": state,
            "events": [],
            "lastUpdateTime": time.time(),
        }
        with self._lock:
            if app != "forgetful_agent":
                self.sessions[(app, user, session_id)] = session
        return Reply(200, session)

    def _run(self, body: Any) -> Reply:
        if not isinstance(body, dict):
            return Reply(422, {"detail": [{"loc": ["body"], "msg": "Input should be an object"}]})
        missing = [
            {"type": "missing", "loc": ["body", snake], "msg": "Field required"}
            for snake, camel in (
                ("app_name", "appName"),
                ("user_id", "userId"),
                ("session_id", "sessionId"),
            )
            if _pick(body, snake, camel) is None
        ]
        message = _pick(body, "new_message", "newMessage") or {}
        texts = [p.get("text") for p in message.get("parts") or [] if isinstance(p, dict)]
        if not texts or not all(texts):
            missing.append(
                {
                    "type": "string_too_short",
                    "loc": ["body", "new_message", "parts", 0, "text"],
                    "msg": "String should have at least 1 character",
                }
            )
        if missing:
            return Reply(422, {"detail": missing})
        app = _pick(body, "app_name", "appName")
        user = _pick(body, "user_id", "userId")
        session_id = _pick(body, "session_id", "sessionId")
        if app not in self.agents:
            return Reply(404, {"detail": f"App not found: {app}"})
        if (app, user, session_id) not in self.sessions:
            return Reply(404, {"detail": f"Session not found: {session_id}"})
        with self._lock:
            self.run_bodies.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.barrier is not None:
                self.barrier.wait(timeout=10)
            if app == "broken_agent":
                return Reply(500, {"detail": "Internal Server Error: model quota exceeded"})
            return Reply(200, self._events(app, texts[0]))
        finally:
            with self._lock:
                self.in_flight -= 1

    @staticmethod
    def _events(app: str, text: str) -> list[dict[str, Any]]:
        call = {
            "content": {
                "parts": [{"functionCall": {"id": "af-1", "name": "lookup", "args": {"q": text}}}],
                "role": "model",
            },
            "author": app,
            "id": "e1",
        }
        response = {
            "content": {
                "parts": [
                    {"functionResponse": {"id": "af-1", "name": "lookup", "response": {"ok": 1}}}
                ],
                "role": "user",
            },
            "author": app,
            "id": "e2",
        }
        if app == "silent_agent":
            return [call, response]
        answer = {
            "content": {"parts": [{"text": "echo: "}, {"text": text}], "role": "model"},
            "author": app,
            "id": "e3",
        }
        return [call, response, answer]
