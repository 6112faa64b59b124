"""HttpClient against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import importlib
import itertools
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.http_servers import LocalServer, Reply, Request, closed_port, sequence, serve
from th2etl.exceptions import MissingExtraError, Th2etlError
from th2etl.helpers.client import HttpClient, HttpConnectionError, HttpError

TOKEN = "tok-9f8e7d6c5b4a"


class PostsApi:
    """A JSONPlaceholder-like /posts API."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = [
            {"id": n, "title": f"post {n}", "body": "...", "userId": 1} for n in (1, 2, 3)
        ]
        self.ids = itertools.count(101)
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Reply:
        parts = request.path.strip("/").split("/")
        if parts == ["posts"] and request.method == "GET":
            user = request.query.get("userId", [None])[0]
            return Reply(200, [p for p in self.posts if user is None or str(p["userId"]) == user])
        if parts == ["posts"] and request.method == "POST":
            with self.lock:
                post = {**request.json(), "id": next(self.ids)}
            return Reply(201, post)
        if len(parts) == 2 and parts[0] == "posts":
            if request.method == "PUT":
                return Reply(200, {**request.json(), "id": int(parts[1])})
            if request.method == "PATCH":
                return Reply(200, {"id": int(parts[1]), **request.json()})
            if request.method == "DELETE":
                return Reply(200, {})
        if parts == ["whoami"]:
            return Reply(200, {"authorization": request.headers.get("authorization")})
        if parts == ["text"]:
            return Reply(200, "plain words")
        if parts == ["nothing"]:
            return Reply(204)
        return Reply(404, {"error": f"no route {request.method} {request.path}"})


@pytest.fixture
def api() -> Iterator[LocalServer]:
    with serve(PostsApi()) as server:
        yield server


def test_the_readme_example_shape_works_against_a_local_api(api: LocalServer) -> None:
    with HttpClient(base_url=api.url) as client:
        posts = client.get("/posts")
        assert len(posts) == 3
        created = client.post("/posts", json_data={"title": "foo", "body": "bar", "userId": 1})
        assert created == {"title": "foo", "body": "bar", "userId": 1, "id": 101}
        assert client.get("posts", params={"userId": 2}) == []
        assert client.put("/posts/1", json_data={"title": "new"}) == {"title": "new", "id": 1}
        assert client.patch("/posts/2", json_data={"title": "p"}) == {"id": 2, "title": "p"}
        assert client.delete("/posts/3") == {}
        assert client.get("/text") == "plain words"
        assert client.get("/nothing") is None
        assert client.get(f"{api.url}/posts") == posts  # a full URL is used as is
    assert [r.method for r in api.requests] == [
        "GET",
        "POST",
        "GET",
        "PUT",
        "PATCH",
        "DELETE",
        "GET",
        "GET",
        "GET",
    ]
    assert api.requests[2].query == {"userId": ["2"]}


def test_auth_token_is_sent_as_a_bearer_header(api: LocalServer) -> None:
    with HttpClient(api.url, auth_token=TOKEN, headers={"X-Team": "etl"}) as client:
        assert client.get("/whoami") == {"authorization": f"Bearer {TOKEN}"}
    assert api.requests[0].headers["x-team"] == "etl"
    assert TOKEN not in repr(client)


def test_an_error_status_raises_http_error_with_status_url_and_body(api: LocalServer) -> None:
    with HttpClient(api.url) as client, pytest.raises(HttpError) as caught:
        client.get("/missing", params={"q": "x"})
    error = caught.value
    assert isinstance(error, Th2etlError)
    assert (error.status, error.url) == (404, f"{api.url}/missing?q=x")
    assert error.body == {"error": "no route GET /missing"}
    assert str(error) == f"GET {api.url}/missing?q=x answered 404: {error.body!r}"


def test_idempotent_requests_are_retried_after_5xx_and_429_honouring_retry_after() -> None:
    app = sequence(
        Reply(503, "busy", headers={"Retry-After": "4"}),
        Reply(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),  # in the past
        Reply(500),
        Reply(200, {"ok": True}),
    )
    waits: list[float] = []
    with serve(app) as server, HttpClient(server.url, retries=3, sleep=waits.append) as client:
        assert client.get("/x") == {"ok": True}
    assert len(server.requests) == 4
    assert waits == [4.0, 0.0, 0.5 * 2**2]


def test_retries_give_up_with_the_last_error() -> None:
    waits: list[float] = []
    with (
        serve(sequence(Reply(502, "bad gateway"))) as server,
        HttpClient(server.url, retries=2, backoff=0.1, sleep=waits.append) as client,
        pytest.raises(HttpError, match=r"GET http://127\.0\.0\.1:\d+/x answered 502: bad gateway"),
    ):
        client.get("/x")
    assert len(server.requests) == 3
    assert waits == [0.1, 0.2]


def test_post_is_not_repeated_after_a_500_but_is_after_a_429() -> None:
    app = sequence(Reply(500, "boom"), Reply(429), Reply(201, {"id": 1}))
    with serve(app) as server, HttpClient(server.url, retries=3, sleep=lambda s: None) as client:
        with pytest.raises(HttpError, match="answered 500: boom"):
            client.post("/x", json_data={"a": 1})
        assert client.post("/x", json_data={"a": 1}) == {"id": 1}
    assert len(server.requests) == 3


def test_a_refused_connection_raises_http_connection_error_without_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{closed_port()}"
    waits: list[float] = []
    with (
        HttpClient(url, auth_token=TOKEN, retries=1, sleep=waits.append) as client,
        pytest.raises(
            HttpConnectionError,
            match=rf"GET {url}/x\?api_key=\*\*\* failed after 2 attempts: the connection was "
            r"refused; check the port",
        ) as caught,
    ):
        client.get("/x", params={"api_key": TOKEN})
    assert isinstance(caught.value, ConnectionError)
    assert TOKEN not in str(caught.value)
    assert TOKEN not in "\n".join(r.getMessage() for r in caplog.records)
    assert len(waits) == 1


def test_an_unresolvable_host_fails_at_once() -> None:
    waits: list[float] = []
    with (
        HttpClient("http://no-such-host.invalid", sleep=waits.append) as client,
        pytest.raises(HttpConnectionError, match=r"host name could not be resolved"),
    ):
        client.get("/x")
    assert waits == []


def test_a_timeout_raises_http_connection_error() -> None:
    with (
        serve(sequence(Reply(200, {}, delay=5))) as server,
        HttpClient(server.url, timeout=0.2, retries=0) as client,
        pytest.raises(HttpConnectionError, match=r"no answer within the timeout of 0\.2s"),
    ):
        client.get("/slow")


def test_a_bad_base_url_is_refused() -> None:
    with pytest.raises(ValueError, match=r"base_url must be an http:// or https:// URL, got 'ftp"):
        HttpClient("ftp://files.example.com")
    with pytest.raises(ValueError, match=r"HttpClient: retries must be 0 or more, got -1"):
        HttpClient("https://api.example.com", retries=-1)


def test_without_requests_the_import_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "requests", None)  # import requests now raises ImportError
    monkeypatch.delitem(sys.modules, "th2etl.helpers.client")
    with pytest.raises(ImportError, match=r"pip install 'th2etl\[http\]'") as caught:
        importlib.import_module("th2etl.helpers.client")
    assert isinstance(caught.value, MissingExtraError)
    assert "th2etl.helpers.client.HttpClient needs the 'requests' package" in str(caught.value)


def test_an_error_body_that_echoes_the_token_is_redacted() -> None:
    def app(request: Request) -> Reply:
        return Reply(401, f"rejected {request.headers.get('authorization')}")

    with (
        serve(app) as server,
        HttpClient(server.url, auth_token=TOKEN) as client,
        pytest.raises(HttpError, match=r"answered 401: rejected Bearer \*\*\*$") as caught,
    ):
        client.get("/x")
    assert caught.value.body == "rejected Bearer ***"
