"""${run:...} references: a run's logical time and data interval, across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from th2etl.blocs import ConfigField, TransformerBloc
from th2etl.exceptions import ValidationError
from th2etl.logical_time import LogicalTime, parse_instant
from th2etl.pipelines import Pipeline, RunContext, run_pipeline
from th2etl.scheduler import CronScheduler, CronTrigger, FakeClock, TickAction
from th2etl.storage import DatabaseStorage
from th2etl.types import Rows

EVERY = {
    "scheduled": "${run:scheduled_time}",
    "start": "${run:interval_start}",
    "end": "${run:interval_end}",
    "date": "${run:date}",
    "compact": "${run:date:%Y%m%d}",
    "window": "from ${run:interval_start:%H:%M %Z} to ${run:interval_end:%H:%M %Z}",
}


class Echo(TransformerBloc):
    """Returns its resolved config as one row, and notes it in ``seen`` (a scheduled run keeps
    no rows in its result)."""

    bloc_type = "logical_time_echo"
    config_fields = (ConfigField("values", "dict", required=True),)
    seen: ClassVar[list[dict[str, Any]]] = []

    def run(self, context: RunContext, rows: Rows) -> Rows:
        row = dict(self.config["values"])
        self.seen.append(row)
        return [row]


def echo_pipeline() -> Pipeline:
    return Pipeline("echo", [[Echo("echo", {"values": EVERY})]])


def run_ticks(cron: str, zone: str, start: datetime, advance: timedelta) -> list[dict[str, Any]]:
    clock = FakeClock(start)
    Echo.seen.clear()
    scheduler = CronScheduler(echo_pipeline(), CronTrigger(cron, zone), clock=clock, logs_dir=None)
    scheduler.start()
    results = clock.advance(advance)  # one after another: a fake clock runs ticks inline
    scheduler.stop()
    assert all(r.action is TickAction.STARTED and r.result for r in results)
    assert [r.result.blocs["echo"].rows_out for r in results if r.result] == [1] * len(results)
    assert len(Echo.seen) == len(results)
    return list(Echo.seen)


def test_daily_interval_is_the_whole_local_day_across_new_york_dst() -> None:
    rows = run_ticks(
        "0 0 * * *", "America/New_York", datetime(2026, 3, 7, 12, tzinfo=UTC), timedelta(days=3)
    )
    assert rows[0] == {
        "scheduled": "2026-03-08T00:00:00-05:00",
        "start": "2026-03-07T00:00:00-05:00",
        "end": "2026-03-08T00:00:00-05:00",
        "date": "2026-03-07",
        "compact": "20260307",
        "window": "from 00:00 EST to 00:00 EST",
    }
    # The day the clocks go forward has 23 hours; its run (fired the next midnight) covers them.
    assert rows[1]["start"] == "2026-03-08T00:00:00-05:00"
    assert rows[1]["end"] == "2026-03-09T00:00:00-04:00"
    assert rows[1]["date"] == "2026-03-08"
    assert rows[1]["window"] == "from 00:00 EST to 00:00 EDT"
    assert rows[2]["date"] == "2026-03-09"
    assert rows[2]["start"] == "2026-03-09T00:00:00-04:00"


def test_fixed_time_in_the_gap_moves_and_the_interval_follows() -> None:
    # 02:30 does not exist on 2026-03-08 in New York: that tick runs at 03:00 EDT.
    rows = run_ticks(
        "30 2 * * *", "America/New_York", datetime(2026, 3, 7, 12, tzinfo=UTC), timedelta(days=2)
    )
    assert [row["scheduled"] for row in rows] == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]
    assert rows[0]["start"] == "2026-03-07T02:30:00-05:00"
    assert rows[1]["start"] == "2026-03-08T03:00:00-04:00"


def test_half_hourly_runs_through_the_repeated_paris_hour() -> None:
    # 2026-10-25: Paris goes from +02:00 back to +01:00 at 03:00 local (01:00 UTC).
    start = datetime(2026, 10, 24, 23, 45, tzinfo=UTC)
    rows = run_ticks("*/30 * * * *", "Europe/Paris", start, timedelta(hours=2))
    assert [(row["start"], row["end"]) for row in rows] == [
        ("2026-10-25T01:30:00+02:00", "2026-10-25T02:00:00+02:00"),
        ("2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00"),
        ("2026-10-25T02:30:00+02:00", "2026-10-25T02:00:00+01:00"),
        ("2026-10-25T02:00:00+01:00", "2026-10-25T02:30:00+01:00"),
    ]
    assert [row["window"] for row in rows][2] == "from 02:30 CEST to 02:00 CET"
    assert {row["date"] for row in rows} == {"2026-10-25"}
    assert {row["compact"] for row in rows} == {"20261025"}
    assert [row["scheduled"] for row in rows] == [row["end"] for row in rows]


def test_daily_interval_across_the_paris_spring_change() -> None:
    # 2026-03-29: Paris goes from +01:00 to +02:00 at 02:00 local; that day has 23 hours.
    rows = run_ticks(
        "0 6 * * *", "Europe/Paris", datetime(2026, 3, 28, 12, tzinfo=UTC), timedelta(days=2)
    )
    assert rows == [
        {
            "scheduled": "2026-03-29T06:00:00+02:00",
            "start": "2026-03-28T06:00:00+01:00",
            "end": "2026-03-29T06:00:00+02:00",
            "date": "2026-03-28",
            "compact": "20260328",
            "window": "from 06:00 CET to 06:00 CEST",
        },
        {
            "scheduled": "2026-03-30T06:00:00+02:00",
            "start": "2026-03-29T06:00:00+02:00",
            "end": "2026-03-30T06:00:00+02:00",
            "date": "2026-03-29",
            "compact": "20260329",
            "window": "from 06:00 CEST to 06:00 CEST",
        },
    ]


def test_manual_runs_are_for_their_start_or_their_at() -> None:
    clock = FakeClock(datetime(2026, 11, 25, 6, 30, tzinfo=UTC))
    row = run_pipeline(echo_pipeline(), clock=clock).outputs["echo"][0]
    assert row["scheduled"] == row["start"] == row["end"] == "2026-11-25T06:30:00+00:00"
    assert row["date"] == "2026-11-25"
    at = parse_instant("2026-03-29T01:59:00+01:00", "--at")
    row = run_pipeline(echo_pipeline(), logical_time=LogicalTime.at(at)).outputs["echo"][0]
    assert row["start"] == row["end"] == "2026-03-29T01:59:00+01:00"
    paris = LogicalTime.at(at, "Europe/Paris")
    assert paris.value("interval_end", "%H:%M %Z") == "01:59 CET"
    assert paris.value("date") == "2026-03-29"


def test_parse_instant_reads_dates_in_a_zone_and_refuses_nonsense() -> None:
    assert parse_instant("2026-11-25", "--from").isoformat() == "2026-11-25T00:00:00+00:00"
    paris = parse_instant("2026-07-01T08:00", "--from", "Europe/Paris")
    assert paris.isoformat() == "2026-07-01T08:00:00+02:00"
    with pytest.raises(ValidationError, match="--at 'yesterday' is not an ISO 8601 date"):
        parse_instant("yesterday", "--at")


def test_unknown_run_names_are_refused_when_stored(tmp_path: Any) -> None:
    with DatabaseStorage(f"sqlite:///{tmp_path / 'db.sqlite'}") as storage:
        with pytest.raises(
            ValidationError,
            match=r"bloc 'load' \(csv_loader\), config key 'file_path': unknown run value 'day' in "
            r"\$\{run:day\}; valid names: date, interval_end, interval_start, scheduled_time",
        ):
            storage.create_bloc("load", "csv_loader", {"file_path": "/data/${run:day}.csv"})
        with pytest.raises(ValidationError, match=r"malformed reference '\$\{run:date:\}'"):
            storage.create_bloc("load", "csv_loader", {"file_path": "/data/${run:date:}.csv"})
        assert storage.list_blocs() == []
        path = "/d/${run:date:%Y/%m/%d}.csv"
        assert storage.create_bloc("load", "csv_loader", {"file_path": path}).config == {
            "file_path": path
        }


def test_logical_time_refuses_a_reversed_interval() -> None:
    end = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(
        ValidationError, match=r"interval_start 2026-01-02T00:00:00\+00:00 is after"
    ):
        LogicalTime(end, end + timedelta(days=1), end)


@pytest.mark.usefixtures("logging_restored")
def test_th2etl_run_at_sets_the_logical_time(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from th2etl.cli import main

    database = tmp_path / "th2etl.db"
    clean_env.setenv("TH2ETL_SQLITE_PATH", str(database))
    (tmp_path / "orders_2026-11-24.csv").write_text("id\n1\n2\n", encoding="utf-8")
    with DatabaseStorage(database) as storage:
        path = str(tmp_path / "orders_${run:date}.csv")
        storage.create_bloc("load", "csv_loader", {"file_path": path})
        storage.create_pipeline("daily", [["load"]])
    # The date is read where the moment was given: the 24th in New York, the 25th in UTC.
    assert main(["run", "daily", "--at", "2026-11-24T23:30:00-05:00"]) == 0
    assert "rows in 0 out 2" in capsys.readouterr().out
    assert main(["run", "daily", "--at", "2026-11-25"]) == 1
    assert "orders_2026-11-25.csv" in capsys.readouterr().out
