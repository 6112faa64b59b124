"""api_loader, run_adk_agents and refresh_webhooks against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from tests.http_servers import AdkServer, LocalServer, Reply, Request, closed_port, sequence, serve
from th2etl import Pipeline, RunContext, create_bloc
from th2etl.blocs._http import send
from th2etl.blocs.http import final_text
from th2etl.exceptions import BlocError, HttpBlocError, ValidationError
from th2etl.pipelines.result import BlocStatus

SECRET = "s3cr3t-T0KEN-value"


def run(bloc_type: str, config: dict[str, object], rows: list[dict[str, object]] | None = None):
    bloc = create_bloc("under_test", bloc_type, config)
    return bloc.resolved({}).run(RunContext("test"), rows or [])


@pytest.fixture
def items_api() -> Iterator[LocalServer]:
    def app(request: Request) -> Reply:
        if request.path == "/items":
            return Reply(200, [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
        if request.path == "/nested":
            return Reply(200, {"data": {"items": [{"id": 1}], "total": 1}, "results": [[5, 6]]})
        if request.path == "/one":
            return Reply(200, {"id": 7})
        if request.path == "/scalar":
            return Reply(200, 42)
        if request.path == "/scalars":
            return Reply(200, [1, "two", {"id": 3}])
        if request.path == "/empty":
            return Reply(204)
        if request.path == "/echo":
            return Reply(
                200,
                {
                    "method": request.method,
                    "query": request.query,
                    "json": request.json(),
                    "auth": request.headers.get("authorization"),
                },
            )
        if request.path == "/html":
            return Reply(200, "<html><body>Sign in</body></html>")
        if request.path == "/slow":
            return Reply(200, [], delay=5)
        return Reply(404, {"detail": f"no route {request.path}"})

    with serve(app) as server:
        yield server


# --- api_loader: output shapes --------------------------------------------------------------


def test_api_loader_turns_a_json_array_of_objects_into_rows(items_api: LocalServer) -> None:
    rows = run("api_loader", {"url": f"{items_api.url}/items"})
    assert rows == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert items_api.paths() == ["GET /items"]
    assert items_api.requests[0].headers["accept"] == "application/json"


def test_api_loader_records_path_picks_the_list_inside_the_reply(items_api: LocalServer) -> None:
    assert run("api_loader", {"url": f"{items_api.url}/nested", "records_path": "data.items"}) == [
        {"id": 1}
    ]
    assert run("api_loader", {"url": f"{items_api.url}/nested", "records_path": "results.0"}) == [
        {"value": 5},
        {"value": 6},
    ]


def test_api_loader_wraps_an_object_and_scalars_in_rows(items_api: LocalServer) -> None:
    assert run("api_loader", {"url": f"{items_api.url}/one"}) == [{"id": 7}]
    assert run("api_loader", {"url": f"{items_api.url}/scalar"}) == [{"value": 42}]
    assert run("api_loader", {"url": f"{items_api.url}/scalars"}) == [
        {"value": 1},
        {"value": "two"},
        {"id": 3},
    ]
    assert run("api_loader", {"url": f"{items_api.url}/empty"}) == []


def test_api_loader_sends_method_params_json_and_headers_from_the_environment(
    items_api: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ITEMS_TOKEN", SECRET)
    config = {
        "url": f"{items_api.url}/echo",
        "method": "post",
        "params": {"page": 2, "tags": ["x", "y"], "active": True},
        "json": {"query": "shoes"},
        "headers": {"Authorization": "Bearer ${env:ITEMS_TOKEN}"},
    }
    [row] = run("api_loader", config)
    assert row == {
        "method": "POST",
        "query": {"page": ["2"], "tags": ["x", "y"], "active": ["true"]},
        "json": {"query": "shoes"},
        "auth": f"Bearer {SECRET}",
    }


def test_api_loader_in_a_pipeline_resolves_a_url_from_a_run_variable(
    items_api: LocalServer,
) -> None:
    load = create_bloc("load", "api_loader", {"url": "${var:api}/items"})
    result = Pipeline("api", [[load]]).run(variables={"api": items_api.url})
    assert result.succeeded, result.summary()
    assert result.outputs["load"] == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


# --- api_loader: bad input and failures -----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/items", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("example.com/items", "no scheme"),
        ("http:///items", "has no host"),
    ],
)
def test_a_url_that_is_not_http_is_refused_when_the_bloc_is_defined(url: str, why: str) -> None:
    with pytest.raises(ValidationError, match=r"bloc 'bad' \(api_loader\): config key 'url' .*"):
        create_bloc("bad", "api_loader", {"url": url})
    with pytest.raises(ValidationError, match=why):
        create_bloc("bad", "api_loader", {"url": url})


def test_a_non_http_url_from_a_reference_is_refused_when_the_bloc_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCE_URL", "ftp://files.example.com/x.csv")
    load = create_bloc("load", "api_loader", {"url": "${env:SOURCE_URL}"})  # accepted for now
    result = Pipeline("p", [[load]]).run()
    assert not result.succeeded
    message = result.blocs["load"].error_message or ""
    assert "bloc 'load' (api_loader): config key 'url' must be an http:// or https:// URL" in (
        message
    )
    assert "ftp://files.example.com/x.csv" in message


def test_bad_method_and_records_path_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"config key 'method' is 'FETCH'; use one of GET"):
        create_bloc("bad", "api_loader", {"url": "http://127.0.0.1/", "method": "FETCH"})
    with pytest.raises(ValidationError, match=r"'records_path' 'data\.\.items' has an empty step"):
        create_bloc(
            "bad", "api_loader", {"url": "http://127.0.0.1/", "records_path": "data..items"}
        )
    with pytest.raises(ValidationError, match=r"'http_retries' must be 0 or more, got -1"):
        create_bloc("bad", "api_loader", {"url": "http://127.0.0.1/", "http_retries": -1})
    with pytest.raises(ValidationError, match=r"header 'X-Page' must be a string, got dict"):
        create_bloc("bad", "api_loader", {"url": "http://127.0.0.1/", "headers": {"X-Page": {}}})


def test_a_host_that_does_not_resolve_fails_with_the_reason() -> None:
    with pytest.raises(
        HttpBlocError,
        match=r"bloc 'under_test' \(api_loader\): GET http://no-such-host\.invalid/items failed: "
        r"the host name could not be resolved .*check the host name",
    ):
        run("api_loader", {"url": "http://no-such-host.invalid/items"})


def test_a_refused_connection_is_retried_then_fails_with_the_reason() -> None:
    url = f"http://127.0.0.1:{closed_port()}/items"
    with pytest.raises(
        HttpBlocError,
        match=rf"GET {url} failed after 3 attempts: the connection was refused .*check the port",
    ):
        run("api_loader", {"url": url, "http_retries": 2, "http_backoff": 0})


def test_a_timeout_fails_with_the_reason(items_api: LocalServer) -> None:
    with pytest.raises(
        HttpBlocError,
        match=r"GET http://127\.0\.0\.1:\d+/slow failed: no answer within the timeout of 0\.2s; "
        r"raise the bloc's timeout",
    ):
        run("api_loader", {"url": f"{items_api.url}/slow", "timeout": 0.2, "http_retries": 0})


def test_a_timeout_in_a_pipeline_is_the_blocs_own_message(items_api: LocalServer) -> None:
    load = create_bloc(
        "load", "api_loader", {"url": f"{items_api.url}/slow", "timeout": 0.2, "http_retries": 0}
    )
    result = Pipeline("p", [[load]]).run()
    assert result.blocs["load"].status is BlocStatus.FAILED
    assert result.blocs["load"].error_type == "HttpBlocError"
    assert "no answer within the timeout of 0.2s" in (result.blocs["load"].error_message or "")


def test_a_body_that_is_not_json_fails_with_its_first_bytes(items_api: LocalServer) -> None:
    with pytest.raises(
        HttpBlocError,
        match=r"GET http://127\.0\.0\.1:\d+/html answered 200 with a body that is not JSON "
        r"\(text/plain.*it starts with '<html><body>Sign in</body></html>'",
    ):
        run("api_loader", {"url": f"{items_api.url}/html"})


def test_a_missing_records_path_names_the_missing_key(items_api: LocalServer) -> None:
    with pytest.raises(
        HttpBlocError,
        match=r"records_path 'data\.rows' not found in the reply of GET http://127\.0\.0\.1:\d+"
        r"/nested: no key 'rows' at data \(keys there: items, total\); fix records_path",
    ):
        run("api_loader", {"url": f"{items_api.url}/nested", "records_path": "data.rows"})
    with pytest.raises(HttpBlocError, match=r"results is a list of 1 items, and '3' is not an"):
        run("api_loader", {"url": f"{items_api.url}/nested", "records_path": "results.3"})
    with pytest.raises(HttpBlocError, match=r"data\.total is int 1, which has no 'x'"):
        run("api_loader", {"url": f"{items_api.url}/nested", "records_path": "data.total.x"})


def test_an_error_status_quotes_the_servers_message(items_api: LocalServer) -> None:
    with pytest.raises(
        HttpBlocError,
        match=r"the API answered with an error: GET http://127\.0\.0\.1:\d+/nope answered 404 "
        r"Not Found: 'no route /nope'; check the URL",
    ):
        run("api_loader", {"url": f"{items_api.url}/nope"})


def test_429_with_retry_after_is_retried_until_the_api_answers() -> None:
    app = sequence(
        Reply(429, {"detail": "slow down"}, headers={"Retry-After": "0"}),
        Reply(503, "busy", headers={"Retry-After": "0"}),
        Reply(200, [{"id": 1}]),
    )
    with serve(app) as server:
        # A backoff of an hour: the test ends only because Retry-After: 0 wins.
        rows = run("api_loader", {"url": f"{server.url}/x", "http_backoff": 3600})
    assert rows == [{"id": 1}]
    assert len(server.requests) == 3


def test_retries_stop_after_http_retries_and_report_the_last_status() -> None:
    config = {"http_retries": 1, "http_backoff": 0}
    with (
        serve(sequence(Reply(502, "bad gateway"))) as server,
        pytest.raises(HttpBlocError, match=r"answered 502 Bad Gateway: 'bad gateway'"),
    ):
        run("api_loader", {"url": f"{server.url}/x", **config})
    assert len(server.requests) == 2


def test_send_waits_what_retry_after_asks_capped_and_backs_off_without_it() -> None:
    app = sequence(
        Reply(429, headers={"Retry-After": "7"}),
        Reply(429, headers={"Retry-After": "86400"}),
        Reply(500),
        Reply(200, {"ok": True}),
    )
    waits: list[float] = []
    with serve(app) as server:
        reply = send(
            "GET", f"{server.url}/x", where="test", retries=3, backoff=0.25, sleep=waits.append
        )
    assert reply.status == 200
    assert waits == [7.0, 30.0, 1.0]  # Retry-After, Retry-After capped, then 0.25 * 2**2


def test_send_does_not_repeat_a_request_that_is_not_idempotent_after_a_500() -> None:
    with serve(sequence(Reply(500, "boom"), Reply(500), Reply(200))) as server:
        reply = send("POST", f"{server.url}/x", where="test", retries=3, idempotent=False)
        assert reply.status == 500
        reply = send("POST", f"{server.url}/x", where="test", retries=3, idempotent=True, backoff=0)
        assert reply.status == 200
    assert len(server.requests) == 3


# --- secrets never in messages or logs ------------------------------------------------------


def test_tokens_and_passwords_are_masked_in_messages_and_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def app(request: Request) -> Reply:
        # A careless server that echoes the credentials back in its error body.
        return Reply(401, {"detail": f"bad token {request.headers.get('authorization')}"})

    monkeypatch.setenv("API_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)
    with serve(app) as server:
        base = server.url.replace("http://", f"http://alice:{SECRET}pw@")
        load = create_bloc(
            "load",
            "api_loader",
            {
                "url": f"{base}/items?access_token=${{env:API_TOKEN}}&page=1",
                "params": {"api_key": "${env:API_TOKEN}"},
                "headers": {"Authorization": "Bearer ${env:API_TOKEN}"},
                "http_retries": 0,
            },
        )
        result = Pipeline("p", [[load]]).run()
    message = result.blocs["load"].error_message or ""
    assert "answered 401 Unauthorized: 'bad token ***'" in message
    assert "http://***@127.0.0.1:" in message
    assert "access_token=***&page=1&api_key=***" in message
    assert "check the credentials in headers" in message
    everything = message + "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records, "the request and the failure are logged"
    assert SECRET not in everything
    assert "alice" not in everything


def test_basic_auth_in_the_url_is_sent_as_a_header() -> None:
    def app(request: Request) -> Reply:
        return Reply(200, {"auth": request.headers.get("authorization")})

    with serve(app) as server:
        url = server.url.replace("http://", "http://bob:pa%24s@") + "/me"
        [row] = run("api_loader", {"url": url})
    assert row == {"auth": "Basic Ym9iOnBhJHM="}  # bob:pa$s


# --- run_adk_agents -------------------------------------------------------------------------


@pytest.fixture
def adk() -> Iterator[tuple[LocalServer, AdkServer]]:
    agent = AdkServer()
    with serve(agent) as server:
        yield server, agent


def adk_config(base_url: str, **extra: object) -> dict[str, object]:
    return {
        "base_url": base_url,
        "agent_id": "echo_agent",
        "user_id": "u_123",
        "message_text": "hello",
        **extra,
    }


def test_run_adk_agents_creates_a_session_then_runs_the_agent(
    adk: tuple[LocalServer, AdkServer],
) -> None:
    server, agent = adk
    [row] = run("run_adk_agents", adk_config(server.url + "/"))
    assert row["agent_id"] == "echo_agent"
    assert row["user_id"] == "u_123"
    assert row["session_id"] == "s-1"
    assert row["message"] == "hello"
    assert row["reply"] == "echo: hello"
    assert [event["id"] for event in row["events"]] == ["e1", "e2", "e3"]
    assert server.paths() == ["POST /apps/echo_agent/users/u_123/sessions", "POST /run"]
    [body] = agent.run_bodies
    message = {"role": "user", "parts": [{"text": "hello"}]}
    assert body["app_name"] == body["appName"] == "echo_agent"
    assert body["user_id"] == body["userId"] == "u_123"
    assert body["session_id"] == body["sessionId"] == "s-1"
    assert body["new_message"] == body["newMessage"] == message


def test_run_adk_agents_enriches_every_input_row_concurrently() -> None:
    # Each /run waits until two runs are in the server at once: the test passes only if the
    # bloc really sends rows concurrently, and max_in_flight shows it never sends more than 2.
    agent = AdkServer(barrier=threading.Barrier(2))
    rows = [{"city": city, "n": n} for n, city in enumerate(["Paris", "Oslo", "Lima", "Rome"])]
    with serve(agent) as server:
        config = adk_config(
            server.url,
            message_text="Weather in {city}? {{brief}}",
            reply_column="forecast",
            max_concurrency=2,
        )
        out = run("run_adk_agents", config, rows)
    assert out == [
        {**row, "forecast": f"echo: Weather in {row['city']}? {{brief}}"} for row in rows
    ]
    assert agent.max_in_flight == 2
    assert len({body["session_id"] for body in agent.run_bodies}) == 4  # a session per row


def test_run_adk_agents_with_no_input_rows_and_placeholders_sends_nothing(
    adk: tuple[LocalServer, AdkServer],
) -> None:
    server, _ = adk
    assert run("run_adk_agents", adk_config(server.url, message_text="Hi {name}"), []) == []
    assert server.requests == []


def test_a_placeholder_missing_from_a_row_fails_before_anything_is_sent(
    adk: tuple[LocalServer, AdkServer],
) -> None:
    server, _ = adk
    rows = [{"city": "Paris"}, {"town": "Oslo"}]
    with pytest.raises(
        BlocError,
        match=r"bloc 'under_test' \(run_adk_agents\), agent 'echo_agent' at http://127\.0\.0\.1:"
        r"\d+: message_text uses \{city\}, but input row 2 has no column 'city' \(columns: town\)",
    ):
        run("run_adk_agents", adk_config(server.url, message_text="Weather in {city}"), rows)
    assert server.requests == []


def test_an_unknown_agent_fails_with_the_servers_404(adk: tuple[LocalServer, AdkServer]) -> None:
    server, _ = adk
    with pytest.raises(
        HttpBlocError,
        match=r"agent 'nobody' at .*: creating a session failed: POST http://127\.0\.0\.1:\d+/apps/"
        r"nobody/users/u_123/sessions answered 404 Not Found: 'App not found: nobody'; check "
        r"agent_id: GET http://127\.0\.0\.1:\d+/list-apps lists",
    ):
        run("run_adk_agents", adk_config(server.url, agent_id="nobody"))


def test_an_unknown_session_fails_with_the_servers_404(adk: tuple[LocalServer, AdkServer]) -> None:
    server, _ = adk
    with pytest.raises(
        HttpBlocError,
        match=r"running the agent in session 's-1' failed: POST .*/run answered 404 Not Found: "
        r"'Session not found: s-1'; the server does not know agent 'forgetful_agent' or session",
    ):
        run("run_adk_agents", adk_config(server.url, agent_id="forgetful_agent"))


def test_a_malformed_run_body_fails_with_the_servers_422(
    adk: tuple[LocalServer, AdkServer],
) -> None:
    server, _ = adk
    with pytest.raises(
        HttpBlocError,
        match=r"answered 422 Unprocessable (Content|Entity): 'body\.new_message\.parts\.0\.text: "
        r"String should have at least 1 character'",
    ):
        run("run_adk_agents", adk_config(server.url, message_text=""))


def test_a_server_error_fails_with_the_status_and_message(
    adk: tuple[LocalServer, AdkServer],
) -> None:
    server, agent = adk
    with pytest.raises(
        HttpBlocError,
        match=r"answered 500 Internal Server Error: 'Internal Server Error: model quota exceeded'"
        r"; the server failed",
    ):
        run("run_adk_agents", adk_config(server.url, agent_id="broken_agent", http_retries=3))
    assert len(agent.run_bodies) == 1, "an agent run is not repeated after a 500"


def test_a_reply_without_text_fails(adk: tuple[LocalServer, AdkServer]) -> None:
    server, _ = adk
    with pytest.raises(
        HttpBlocError,
        match=r"the agent answered 2 event\(s\) in session 's-1' but no text reply",
    ):
        run("run_adk_agents", adk_config(server.url, agent_id="silent_agent"))


def test_one_failing_row_fails_the_bloc_and_names_the_row() -> None:
    agent = AdkServer()
    with serve(agent) as server:
        rows = [{"text": "a"}, {"text": ""}, {"text": "c"}]
        with pytest.raises(HttpBlocError, match=r"\(run_adk_agents\), agent .*, row 2: running"):
            run("run_adk_agents", adk_config(server.url, message_text="{text}"), rows)


def test_run_adk_agents_sends_gateway_headers_and_masks_them(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    agent = AdkServer(token=SECRET)
    caplog.set_level(logging.DEBUG)
    with serve(agent) as server:
        monkeypatch.setenv("ADK_TOKEN", SECRET)
        headers = {"Authorization": "Bearer ${env:ADK_TOKEN}"}
        [row] = run("run_adk_agents", adk_config(server.url, headers=headers))
        assert row["reply"] == "echo: hello"
        monkeypatch.setenv("ADK_TOKEN", "wrong-token-123")
        with pytest.raises(HttpBlocError, match=r"401 Unauthorized: 'Missing or invalid cred"):
            run("run_adk_agents", adk_config(server.url, headers=headers))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in logged
    assert "wrong-token-123" not in logged


def test_run_adk_agents_refuses_bad_config() -> None:
    base = {"base_url": "http://127.0.0.1:1", "user_id": "u", "message_text": "hi"}
    with pytest.raises(ValidationError, match=r"'agent_id' is '\.\./etc'; an ADK agent ID"):
        create_bloc("bad", "run_adk_agents", {**base, "agent_id": "../etc"})
    with pytest.raises(ValidationError, match=r"'message_text' has '\{' at position 3, which is"):
        create_bloc("bad", "run_adk_agents", {**base, "agent_id": "a", "message_text": "hi {"})
    with pytest.raises(ValidationError, match=r"'max_concurrency' must be 1 or more, got 0"):
        create_bloc("bad", "run_adk_agents", {**base, "agent_id": "a", "max_concurrency": 0})
    with pytest.raises(ValidationError, match=r"config key 'base_url' must be an http"):
        create_bloc("bad", "run_adk_agents", {**base, "agent_id": "a", "base_url": "ws://x"})
    with pytest.raises(ValidationError, match=r"missing required config key 'message_text'"):
        create_bloc(
            "bad", "run_adk_agents", {"base_url": "http://x", "agent_id": "a", "user_id": "u"}
        )


def test_final_text_is_the_last_event_with_text() -> None:
    events = [
        {"content": {"role": "model", "parts": [{"text": "first"}]}},
        {"content": {"role": "model", "parts": [{"text": "thinking", "thought": True}]}},
        {"content": {"role": "model", "parts": [{"text": "Hel"}, {"text": "lo"}]}},
        {"content": {"role": "model", "parts": [{"text": "Hel"}]}, "partial": True},
        {"content": {"role": "user", "parts": [{"functionResponse": {}}]}},
        {"actions": {"stateDelta": {}}},
    ]
    assert final_text(events) == "Hello"
    assert final_text([{"content": {"role": "model", "parts": [{"functionCall": {}}]}}]) is None
    assert final_text([]) is None


# --- refresh_webhooks -----------------------------------------------------------------------


def test_refresh_webhooks_posts_the_user_id_and_records_status_and_reply() -> None:
    def app(request: Request) -> Reply:
        return Reply(200, {"refreshed": 3, "user": request.json()["user_id"]})

    with serve(app) as server:
        [row] = run("refresh_webhooks", {"url": f"{server.url}/hooks/refresh", "user_id": "u_9"})
    assert row == {
        "url": f"{server.url}/hooks/refresh",
        "user_id": "u_9",
        "status": 200,
        "reply": {"refreshed": 3, "user": "u_9"},
    }
    [request] = server.requests
    assert (request.method, request.json()) == ("POST", {"user_id": "u_9"})
    assert request.headers["content-type"] == "application/json"


def test_refresh_webhooks_keeps_a_text_reply() -> None:
    with serve(sequence(Reply(202, "queued"))) as server:
        [row] = run("refresh_webhooks", {"url": server.url, "user_id": 42})
    assert (row["status"], row["reply"], row["user_id"]) == (202, "queued", 42)


def test_refresh_webhooks_fails_on_an_error_status_with_the_body_and_does_not_repeat() -> None:
    with (
        serve(sequence(Reply(500, "boom: webhook store is down"))) as server,
        pytest.raises(
            HttpBlocError,
            match=r"bloc 'under_test' \(refresh_webhooks\): POST http://127\.0\.0\.1:\d+/r "
            r"answered 500; the body starts with 'boom: webhook store is down'",
        ),
    ):
        run("refresh_webhooks", {"url": f"{server.url}/r", "user_id": "u"})
    assert len(server.requests) == 1


def test_refresh_webhooks_retries_a_503() -> None:
    app = sequence(Reply(503, headers={"Retry-After": "0"}), Reply(200, {"ok": True}))
    with serve(app) as server:
        [row] = run("refresh_webhooks", {"url": server.url, "user_id": "u"})
    assert row["reply"] == {"ok": True}
    assert len(server.requests) == 2


def test_refresh_webhooks_refuses_a_user_id_that_is_not_a_string_or_integer() -> None:
    with pytest.raises(
        ValidationError, match=r"'user_id' must be a string or an integer, got True"
    ):
        create_bloc("bad", "refresh_webhooks", {"url": "http://x", "user_id": True})


def test_timeout_bounds_each_request_and_defaults_to_30_seconds() -> None:
    bloc = create_bloc("load", "api_loader", {"url": "http://127.0.0.1/"})
    assert bloc.config["timeout"] == 30.0
    assert bloc.timeout is None  # the engine does not abandon the thread: requests time out
    [field] = [f for f in bloc.schema()["config"] if f["name"] == "timeout"]
    assert field["default"] == 30.0
    assert "one HTTP request" in field["help"]
    with pytest.raises(ValidationError, match=r"'timeout' must be more than 0 seconds, got 0"):
        create_bloc("bad", "refresh_webhooks", {"url": "http://x", "user_id": 1, "timeout": 0})


def test_a_redirect_to_another_host_does_not_carry_the_authorization_header() -> None:
    def landing(request: Request) -> Reply:
        return Reply(200, {"auth": request.headers.get("authorization")})

    with serve(landing) as other:

        def app(request: Request) -> Reply:
            if request.path == "/away":
                return Reply(302, headers={"Location": f"{other.url}/landing"})
            if request.path == "/here":
                return Reply(302, headers={"Location": "/landing"})
            return landing(request)

        with serve(app) as server:
            headers = {"Authorization": f"Bearer {SECRET}"}
            away = run("api_loader", {"url": f"{server.url}/away", "headers": headers})
            here = run("api_loader", {"url": f"{server.url}/here", "headers": headers})
    assert away == [{"auth": None}]
    assert here == [{"auth": f"Bearer {SECRET}"}]


# --- api_loader pagination ------------------------------------------------------------------

ITEMS = [{"id": n} for n in range(1, 8)]


def _pages(request: Request) -> list[dict[str, int]]:
    size = int(request.query.get("per_page", ["3"])[0])
    page = int(request.query.get("page", ["1"])[0])
    return ITEMS[(page - 1) * size : page * size]


@pytest.fixture
def paged_api() -> Iterator[LocalServer]:
    def app(request: Request) -> Reply:
        if request.path == "/numbered":
            return Reply(200, {"items": _pages(request)})
        if request.path == "/cursor":
            start = int(request.query.get("after", ["0"])[0])
            chunk = ITEMS[start : start + 3]
            more = start + 3 < len(ITEMS)
            return Reply(200, {"items": chunk, "meta": {"next": str(start + 3) if more else None}})
        if request.path == "/linked":
            page = int(request.query.get("page", ["1"])[0])
            headers = {}
            if page * 3 < len(ITEMS):
                headers["Link"] = f'</first>; rel="first", </linked?page={page + 1}>; rel="next"'
            return Reply(200, {"items": _pages(request)}, headers=headers)
        if request.path == "/body_link":
            page = int(request.query.get("page", ["1"])[0])
            nxt = f"/body_link?page={page + 1}" if page * 3 < len(ITEMS) else None
            return Reply(200, {"items": _pages(request), "links": {"next": nxt}})
        if request.path == "/forever":
            return Reply(200, {"items": [{"id": 1}], "meta": {"next": "same"}})
        return Reply(404, {"detail": f"no route {request.path}"})

    with serve(app) as server:
        yield server


def test_pagination_by_page_number_streams_each_page_as_a_batch(paged_api: LocalServer) -> None:
    load = create_bloc(
        "load",
        "api_loader",
        {
            "url": f"{paged_api.url}/numbered",
            "records_path": "items",
            "pagination": {"type": "page", "param": "page", "size": 3, "size_param": "per_page"},
        },
    )
    result = Pipeline("paged", [[load]]).run()
    assert result.outputs["load"] == ITEMS
    assert result.blocs["load"].batches_out == 3  # 3 + 3 + 1: the short page is the last
    assert [r.query["page"] for r in paged_api.requests] == [["1"], ["2"], ["3"]]


def test_pagination_by_cursor_from_a_json_path(paged_api: LocalServer) -> None:
    rows = run(
        "api_loader",
        {
            "url": f"{paged_api.url}/cursor",
            "records_path": "items",
            "params": {"fixed": "x"},
            "pagination": {"type": "cursor", "param": "after", "cursor_path": "meta.next"},
        },
    )
    assert rows == ITEMS
    assert [r.query for r in paged_api.requests] == [
        {"fixed": ["x"]},
        {"fixed": ["x"], "after": ["3"]},
        {"fixed": ["x"], "after": ["6"]},
    ]


@pytest.mark.parametrize("where", ["header", "body"])
def test_pagination_by_next_link(paged_api: LocalServer, where: str) -> None:
    pagination = (
        {"type": "next_link"}
        if where == "header"
        else {
            "type": "next_link",
            "next_path": "links.next",
        }
    )
    path = "/linked" if where == "header" else "/body_link"
    rows = run(
        "api_loader",
        {"url": f"{paged_api.url}{path}", "records_path": "items", "pagination": pagination},
    )
    assert rows == ITEMS
    assert [r.path for r in paged_api.requests] == [path] * 3


def test_a_page_limit_stops_an_api_that_never_ends(paged_api: LocalServer) -> None:
    config = {
        "url": f"{paged_api.url}/forever",
        "records_path": "items",
        "max_pages": 5,
        "pagination": {"type": "cursor", "cursor_path": "meta.next"},
    }
    with pytest.raises(BlocError, match=r"the API still had more pages after max_pages \(5\)"):
        run("api_loader", config)
    assert len(paged_api.requests) == 5


def test_bad_pagination_is_refused_with_the_choices() -> None:
    with pytest.raises(ValidationError, match="pagination type is 'pages'; use 'page'"):
        create_bloc("l", "api_loader", {"url": "http://x", "pagination": {"type": "pages"}})
    with pytest.raises(ValidationError, match="pagination of type 'cursor' needs 'cursor_path'"):
        create_bloc("l", "api_loader", {"url": "http://x", "pagination": {"type": "cursor"}})
    with pytest.raises(ValidationError, match="pagination of type 'page' has no key 'next_path'"):
        create_bloc(
            "l", "api_loader", {"url": "http://x", "pagination": {"type": "page", "next_path": "a"}}
        )
