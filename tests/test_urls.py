"""Credential masking and Retry-After parsing (th2etl._urls)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from th2etl._urls import Redactor, backoff_delay, is_secret_name, mask_url, retry_after_seconds


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.example.com/v1/items?page=2", "https://api.example.com/v1/items?page=2"),
        ("https://bob:pw@api.example.com/x", "https://***@api.example.com/x"),
        ("https://TOKEN123@api.example.com/x", "https://***@api.example.com/x"),
        (
            "http://h/x?token=a&key=b&password=c&access_token=d&API_KEY=e&q=f",
            "http://h/x?token=***&key=***&password=***&access_token=***&API_KEY=***&q=f",
        ),
        (
            "http://h/x?client_secret=z&sig=y&author=me",
            "http://h/x?client_secret=***&sig=***&author=me",
        ),
        ("http://h/x?token=", "http://h/x?token="),
        ("http://[::1/x", "***"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_secret_names() -> None:
    secret = ["Authorization", "X-Api-Key", "Cookie", "private_token", "passwd", "x-auth", "jwt"]
    plain = ["Accept", "author", "page", "monkeys", "design", "user_id"]
    assert [name for name in secret + plain if is_secret_name(name)] == secret


def test_redactor_removes_header_and_url_secrets_from_text() -> None:
    redact = Redactor()
    redact.add_headers({"Authorization": "Bearer abc.def.ghi", "Accept": "application/json"})
    redact.add_url("https://joe:hunter22@h/x?api_key=k%2F123&page=5")
    text = "echo: Bearer abc.def.ghi / abc.def.ghi / hunter22 / k/123 / k%2F123 / page 5 / joe"
    assert redact(text) == "echo: *** / *** / *** / *** / *** / page 5 / joe"
    assert Redactor(["abc"])("abc") == "abc"  # too short to be a secret worth hiding


def test_retry_after_seconds_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 25, 8, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 1.5 ") == 1.5
    assert retry_after_seconds("Wed, 25 Nov 2026 08:00:10 GMT", now=now) == 10.0
    assert retry_after_seconds("Wed, 25 Nov 2026 07:00:00 GMT", now=now) == 0.0
    assert retry_after_seconds("-5") == 0.0
    for unreadable in (None, "", "soon", "nan", "inf"):
        assert retry_after_seconds(unreadable) is None


def test_backoff_delay_doubles_and_retry_after_wins_within_the_cap() -> None:
    assert [backoff_delay(n, 0.5) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delay(10, 0.5) == 30.0
    assert backoff_delay(1, 0.5, "12") == 12.0
    assert backoff_delay(1, 0.5, "3600", cap=5) == 5
    assert backoff_delay(3, 0.5, "later") == 2.0
