"""th2etl notify set, show and remove."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import Cli


def test_rules_are_set_shown_and_removed(cli: Cli) -> None:
    code, out, _ = cli("notify", "set", "--webhook", "https://hooks.example.com/x?t=${env:T}")
    assert code == 0 and out.startswith("notification rule of every run (the default) stored")
    cli.storage.create_bloc("double", "example_transformer")
    cli.storage.create_pipeline("sales", [["double"]])
    cli.storage.create_trigger("daily", "sales", "0 6 * * *")
    cli.storage.create_scheduler("nightly", "sales", "daily")
    code, _, _ = cli(
        "notify",
        "set",
        "--scheduler",
        "nightly",
        "--on",
        "failure,duration",
        "--expected-duration",
        "2h",
        "--email",
        "ops@example.com",
        "--header",
        "Authorization=Bearer ${env:T}",
        "--webhook",
        "https://h.example.com",
    )
    assert code == 0
    code, out, _ = cli("notify", "show", "--json")
    assert json.loads(out) == {
        "*": {"on": ["failure"], "webhook": "https://hooks.example.com/x?t=${env:T}"},
        "nightly": {
            "on": ["failure", "duration"],
            "webhook": "https://h.example.com",
            "headers": {"Authorization": "Bearer ${env:T}"},
            "email": ["ops@example.com"],
            "expected_duration": 7200.0,
        },
    }
    assert cli("notify", "remove")[0] == 0
    assert list(cli.storage.notification_rules()) == ["nightly"]
    code, _, err = cli("notify", "remove")
    assert code == 1 and "no notification rule for '*'" in err


def test_bad_rules_change_nothing(cli: Cli) -> None:
    code, _, err = cli("notify", "set", "--on", "failed", "--webhook", "https://h")
    assert code == 1 and "names no known event; use some of failure, success, missed" in err
    code, _, err = cli("notify", "set", "--scheduler", "nope", "--webhook", "https://h")
    assert code == 1 and "scheduler 'nope' does not exist" in err
    with pytest.raises(SystemExit):
        cli("notify", "set", "--expected-duration", "soon", "--webhook", "https://h")
    assert cli.storage.notification_rules() == {}
