"""th2etl list and th2etl next (with its DST notes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.cli.conftest import Cli
from th2etl.scheduler.preview import fire_times
from th2etl.scheduler.triggers import CronTrigger


def _definitions(cli: Cli) -> None:
    cli.storage.create_bloc("load", "csv_loader", config={"file_path": "in.csv"}, description="in")
    cli.storage.create_bloc("double", "example_transformer", config={"factor": 2})
    cli.storage.create_bloc("store", "csv_exporter", config={"file_path": "out.csv"})
    cli.storage.create_pipeline("sales", [["load"], ["double"], ["store"]], description="daily")
    cli.storage.create_trigger("at_230", "sales", "30 2 * * *", timezone="America/New_York")
    cli.storage.create_scheduler("nightly", "sales", "at_230", enabled=False)


def test_list_prints_each_kind_as_a_table_and_as_json(cli: Cli) -> None:
    _definitions(cli)
    code, out, _ = cli("list", "pipelines")
    assert code == 0
    assert out.splitlines()[1].split() == ["sales", "load", "->", "double", "->", "store", "daily"]
    assert cli("list", "blocs")[1].splitlines()[1].split() == ["double", "example_transformer"]
    assert "nightly  sales     at_230   no" in cli("list", "schedulers")[1]
    assert "30 2 * * *  America/New_York" in cli("list", "triggers")[1]
    code, out, _ = cli("list", "blocs", "--json")
    assert [bloc["name"] for bloc in json.loads(out)] == ["double", "load", "store"]
    assert json.loads(out)[1]["config"] == {"file_path": "in.csv"}


def test_list_of_nothing_says_where_it_looked(cli: Cli) -> None:
    code, out, _ = cli("list", "triggers")
    assert code == 0 and out.startswith(f"no triggers in {cli.storage.describe()}")


def test_next_prints_fire_times_in_the_zone_with_dst_notes(cli: Cli) -> None:
    _definitions(cli)
    code, out, _ = cli("next", "nightly", "-n", "3", "--after", "2026-03-07T00:00Z")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (
        "scheduler 'nightly' runs pipeline 'sales' at '30 2 * * *' in America/New_York "
        "(trigger 'at_230') (disabled: it will not fire until enabled)"
    )
    assert lines[1].split() == ["2026-03-07", "02:30", "EST", "(-05:00)", "2026-03-07", "07:30Z"]
    assert lines[2].split()[:6] == [
        "2026-03-08",
        "03:00",
        "EDT",
        "(-04:00)",
        "2026-03-08",
        "07:00Z",
    ]
    assert lines[2].endswith(
        "DST: clocks go forward from 02:00 to 03:00 on 2026-03-08; the time due in the skipped "
        "hour runs at 03:00, the first instant after the gap"
    )
    code, out, _ = cli("next", "nightly", "-n", "2", "--after", "2026-03-07T00:00Z", "--json")
    answer = json.loads(out)
    assert answer["timezone"] == "America/New_York" and answer["enabled"] is False
    assert answer["fire_times"][0] == {
        "local": "2026-03-07T02:30:00-05:00",
        "utc": "2026-03-07T07:30:00+00:00",
        "note": None,
    }


def test_next_refuses_an_unknown_scheduler_and_a_naive_after(cli: Cli) -> None:
    code, _, err = cli("next", "nope")
    assert code == 1
    assert "scheduler 'nope' does not exist in " in err
    assert "'th2etl list schedulers' lists the stored ones" in err
    with pytest.raises(SystemExit):
        cli("next", "nope", "--after", "2026-03-07 00:00")
    assert "'2026-03-07 00:00' is not a date and time with a zone; use ISO 8601, e.g." in (
        cli.capsys.readouterr().err
    )


def _notes(expression: str, after: str, n: int) -> list[tuple[str, str | None]]:
    trigger = CronTrigger(expression, "America/New_York")
    start = datetime.fromisoformat(after).astimezone(UTC)
    return [(t.at.isoformat(), t.note) for t in fire_times(trigger, start, n)]


def test_dst_notes_for_a_time_that_occurs_twice() -> None:
    fixed = _notes("30 1 * * *", "2026-10-31T12:00Z", 2)
    assert fixed[0] == (
        "2026-11-01T01:30:00-04:00",
        "DST: 01:30 occurs twice on 2026-11-01 (clocks go back); runs once, at the first (-04:00)",
    )
    assert fixed[1][1] == (
        "DST: clocks went back since the previous fire time (UTC offset -04:00 -> -05:00)"
    )
    hourly = _notes("30 * * * *", "2026-11-01T05:00Z", 2)
    assert [note for _, note in hourly] == [
        "DST: 01:30 occurs twice on 2026-11-01 (clocks go back); interval jobs run in both, "
        "this is the first (-04:00)",
        "DST: 01:30 occurs twice on 2026-11-01 (clocks go back); interval jobs run in both, "
        "this is the second (-05:00)",
    ]


def test_no_note_on_ordinary_days_and_a_plain_offset_note_for_interval_jobs() -> None:
    assert [note for _, note in _notes("0 9 * * *", "2026-06-01T00:00Z", 3)] == [None] * 3
    hourly = _notes("30 * * * *", "2026-03-08T06:00Z", 2)
    assert hourly == [
        ("2026-03-08T01:30:00-05:00", None),
        (
            "2026-03-08T03:30:00-04:00",
            "DST: clocks went forward since the previous fire time (UTC offset -05:00 -> -04:00)",
        ),
    ]
