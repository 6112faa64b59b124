"""Notifications through a real HTTP server and a real SMTP server (aiosmtpd), on both
backends: events, retries with backoff, failures recorded on the run, one delivery each."""

from __future__ import annotations

import email
import email.policy
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.api.servers import free_port
from tests.http_servers import Reply, Request, closed_port, serve
from th2etl.exceptions import ValidationError
from th2etl.notifications import Dispatcher, NotificationRule, SmtpSettings

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


@pytest.fixture
def storage(open_storage: Any) -> Any:
    return open_storage()


def _ended(
    storage: Any,
    run_id: str,
    status: str,
    *,
    scheduler: str | None = None,
    error: str | None = None,
) -> None:
    storage.start_run(
        run_id, "sales", started_at=NOW - timedelta(minutes=5), scheduler_name=scheduler
    )
    storage.finish_run(run_id, status, finished_at=NOW - timedelta(seconds=10), error=error)


def _dispatcher(open_storage: Any, **options: Any) -> Dispatcher:
    class Clock:
        def now(self) -> datetime:
            return NOW

        def sleep(self, seconds: float) -> None:  # pragma: no cover - not used by tick()
            pass

    options.setdefault("backoff", 1.0)
    options.setdefault("max_attempts", 3)
    options.setdefault("timeout", 5.0)
    return Dispatcher(open_storage, clock=Clock(), **options)


def test_a_failed_run_is_posted_once_with_its_summary(storage: Any, open_storage: Any) -> None:
    with serve(lambda request: Reply(204)) as server:
        storage.set_notification_rule(
            "*",
            {
                "on": ["failure"],
                "webhook": f"{server.url}/hook",
                "headers": {"X-Token": "${env:HOOK_TOKEN}"},
            },
        )
        _ended(storage, "r-failed", "failed", error="boom")
        _ended(storage, "r-ok", "succeeded")
        dispatcher = _dispatcher(open_storage)
        import os

        os.environ["HOOK_TOKEN"] = "t0ken"
        try:
            assert dispatcher.tick(NOW) == 1
            assert dispatcher.tick(NOW + timedelta(seconds=5)) == 0
        finally:
            del os.environ["HOOK_TOKEN"]
            dispatcher.stop()
    (request,) = server.requests
    assert request.method == "POST" and request.path == "/hook"
    assert {k.lower(): v for k, v in request.headers.items()}["x-token"] == "t0ken"
    body = request.json()
    assert body["event"] == "failure" and body["run_id"] == "r-failed"
    assert body["status"] == "failed" and body["error"] == "boom" and body["pipeline"] == "sales"
    assert body["duration"] == pytest.approx(290.0)
    (delivery,) = storage.notifications_of("r-failed")
    assert delivery["status"] == "sent" and delivery["attempts"] == 1


def test_a_failing_webhook_is_retried_with_backoff(storage: Any, open_storage: Any) -> None:
    answers = iter([500, 502, 200])

    def app(request: Request) -> Reply:
        return Reply(next(answers))

    with serve(app) as server:
        storage.set_notification_rule(
            "nightly", {"on": ["failure", "success"], "webhook": server.url}
        )
        _ended(storage, "r-1", "abandoned", scheduler="nightly")
        dispatcher = _dispatcher(open_storage)
        try:
            assert dispatcher.tick(NOW) == 1  # 500
            assert dispatcher.tick(NOW + timedelta(seconds=0.5)) == 0  # not due before 1s
            assert dispatcher.tick(NOW + timedelta(seconds=1)) == 1  # 502
            assert dispatcher.tick(NOW + timedelta(seconds=2.5)) == 0  # backoff doubled: 2s
            assert dispatcher.tick(NOW + timedelta(seconds=3)) == 1  # 200
        finally:
            dispatcher.stop()
    assert len(server.requests) == 3
    (delivery,) = storage.notifications_of("r-1")
    assert (delivery["status"], delivery["attempts"]) == ("sent", 3)
    assert "HTTP Error 502" in delivery["last_error"]


def test_an_unreachable_webhook_is_recorded_on_the_run_whose_outcome_stays(
    storage: Any, open_storage: Any
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    storage.set_notification_rule("*", {"webhook": url})
    _ended(storage, "r-1", "failed", error="boom")
    dispatcher = _dispatcher(open_storage, max_attempts=2)
    try:
        dispatcher.tick(NOW)
        dispatcher.tick(NOW + timedelta(seconds=1))
    finally:
        dispatcher.stop()
    (delivery,) = storage.notifications_of("r-1")
    assert (delivery["status"], delivery["attempts"]) == ("failed", 2)
    run = storage.get_run("r-1")
    assert run.status.value == "failed" and run.error == "boom"
    assert f"notification failure to webhook {url} failed after 2 attempt(s): URLError" in run.log


def test_missed_ticks_and_long_runs_are_notified_when_asked(
    storage: Any, open_storage: Any
) -> None:
    with serve(lambda request: Reply(200)) as server:
        storage.set_notification_rule(
            "*", {"on": ["missed", "duration"], "webhook": server.url, "expected_duration": 60}
        )
        storage.record_skipped_run(
            "nightly",
            NOW - timedelta(hours=1),
            "missed: the service was down",
            pipeline_name="sales",
            trigger_name=None,
            instance_id=None,
            now=NOW - timedelta(seconds=5),
        )
        storage.start_run("r-long", "sales", started_at=NOW - timedelta(minutes=2))
        _ended(storage, "r-failed", "failed")  # not asked for
        dispatcher = _dispatcher(open_storage)
        try:
            assert dispatcher.tick(NOW) == 2
            assert dispatcher.tick(NOW + timedelta(seconds=30)) == 0  # each once
        finally:
            dispatcher.stop()
    events = sorted((r.json()["event"], r.json()["status"]) for r in server.requests)
    assert events == [("duration", "running"), ("missed", "skipped")]


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_several_processes_deliver_each_notification_once(storage: Any, open_storage: Any) -> None:
    with serve(lambda request: Reply(200)) as server:
        storage.set_notification_rule("*", {"webhook": server.url})
        for number in range(12):
            _ended(storage, f"r-{number}", "failed")
        dispatchers = [_dispatcher(open_storage) for _ in range(4)]
        barrier = threading.Barrier(len(dispatchers))

        def work(dispatcher: Dispatcher) -> None:
            dispatcher.storage.notification_rules()  # connect before the race
            barrier.wait()
            dispatcher.tick(NOW)

        threads = [threading.Thread(target=work, args=(d,)) for d in dispatchers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for dispatcher in dispatchers:
            dispatcher.stop()
    assert sorted(r.json()["run_id"] for r in server.requests) == sorted(
        f"r-{n}" for n in range(12)
    )


# -- email ---------------------------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (
                envelope.rcpt_tos,
                email.message_from_bytes(envelope.content, policy=email.policy.default),
            )
        )
        return "250 OK"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def smtp_server(
    certificate: tuple[Path, Path],
) -> Iterator[tuple[Inbox, int, list[tuple[str, str]]]]:
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    logins: list[tuple[str, str]] = []

    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=data.password == b"s3cret")

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield inbox, controller.port, logins
    finally:
        controller.stop()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_email_goes_through_starttls_with_a_login(
    storage: Any,
    open_storage: Any,
    smtp_server: Any,
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inbox, port, logins = smtp_server
    monkeypatch.setenv("SMTP_SECRET", "s3cret")
    smtp = SmtpSettings.from_env(
        {
            "TH2ETL_SMTP_HOST": "127.0.0.1",
            "TH2ETL_SMTP_PORT": str(port),
            "TH2ETL_SMTP_STARTTLS": "true",
            "TH2ETL_SMTP_USER": "etl",
            "TH2ETL_SMTP_PASSWORD": "${env:SMTP_SECRET}",
            "TH2ETL_SMTP_FROM": "th2etl@example.com",
            "TH2ETL_SMTP_CA_FILE": str(certificate[0]),
        }
    )
    storage.set_notification_rule("*", {"on": ["failure", "success"], "email": ["ops@example.com"]})
    _ended(storage, "r-mail", "succeeded", scheduler="nightly")
    dispatcher = _dispatcher(open_storage, smtp=smtp)
    try:
        assert dispatcher.tick(NOW) == 1
    finally:
        dispatcher.stop()
    assert logins == [("etl", "s3cret")]
    ((recipients, message),) = inbox.messages
    assert recipients == ["ops@example.com"]
    assert message["Subject"] == "th2etl: pipeline 'sales' succeeded (run r-mail)"
    assert message["From"] == "th2etl@example.com"
    assert "run_id: r-mail" in message.get_content()
    assert storage.notifications_of("r-mail")[0]["status"] == "sent"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_unreachable_smtp_server_is_recorded(storage: Any, open_storage: Any) -> None:
    smtp = SmtpSettings(host="127.0.0.1", port=closed_port())
    storage.set_notification_rule("*", {"email": ["ops@example.com"]})
    _ended(storage, "r-1", "failed")
    dispatcher = _dispatcher(open_storage, smtp=smtp, max_attempts=1)
    try:
        dispatcher.tick(NOW)
    finally:
        dispatcher.stop()
    (delivery,) = storage.notifications_of("r-1")
    assert delivery["status"] == "failed" and "ConnectionRefusedError" in delivery["last_error"]
    assert "notification failure to email ops@example.com failed after 1 attempt(s)" in (
        storage.get_run("r-1").log
    )


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            {"on": ["failed"], "webhook": "http://h"},
            r"on \['failed'\] names no known event; use some of failure, success",
        ),
        ({"webhook": "ftp://h"}, r"webhook 'ftp://h' is not an http\(s\) URL"),
        ({"on": ["failure"]}, r"give a webhook URL, email addresses, or both"),
        ({"email": ["nobody"]}, r"email \['nobody'\] must be addresses like ops@example.com"),
        ({"on": ["duration"], "webhook": "http://h"}, r"on 'duration' needs expected_duration"),
        ({"webhook": "http://h", "url": 1}, r"unknown key\(s\) url; use on, webhook"),
        ({"webhook": "http://h/${ENV:X}"}, r"malformed reference"),
    ],
)
def test_bad_rules_are_refused(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        NotificationRule.from_dict(rule)
