"""CronTrigger: parsing, refusals, and the DST policy with exact instants."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from th2etl.exceptions import CronError, ValidationError
from th2etl.scheduler import CronTrigger


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def utc_list(times: list[datetime]) -> list[str]:
    return [t.astimezone(UTC).strftime("%Y-%m-%d %H:%M") for t in times]


def local_day(zone: str, day: date) -> tuple[datetime, datetime]:
    """The instants just before local midnight of ``day`` and at local midnight after it."""
    tz = ZoneInfo(zone)
    start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC)
    return start - timedelta(microseconds=1), end - timedelta(microseconds=1)


# -- syntax -------------------------------------------------------------------------------------


def test_five_fields_and_previews() -> None:
    trigger = CronTrigger("*/5 * * * *")
    after = utc("2026-01-01 12:01")
    assert utc_list(trigger.next_fire_times(after, 3)) == [
        "2026-01-01 12:05",
        "2026-01-01 12:10",
        "2026-01-01 12:15",
    ]
    assert trigger.next_fire_time(utc("2026-01-01 12:05")) == utc("2026-01-01 12:10")
    assert trigger.next_fire_times(after, 0) == []
    assert utc_list(
        trigger.fire_times_between(utc("2026-01-01 12:00"), utc("2026-01-01 12:10"))
    ) == [
        "2026-01-01 12:05",
        "2026-01-01 12:10",
    ]
    assert trigger.fire_times_between(utc("2026-01-01 12:10"), utc("2026-01-01 12:00")) == []


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@hourly", ["2026-05-15 11:00", "2026-05-15 12:00"]),
        ("@daily", ["2026-05-16 00:00", "2026-05-17 00:00"]),
        ("@midnight", ["2026-05-16 00:00", "2026-05-17 00:00"]),
        ("@weekly", ["2026-05-17 00:00", "2026-05-24 00:00"]),  # Sundays
        ("@monthly", ["2026-06-01 00:00", "2026-07-01 00:00"]),
        ("@yearly", ["2027-01-01 00:00", "2028-01-01 00:00"]),
        ("@ANNUALLY", ["2027-01-01 00:00", "2028-01-01 00:00"]),
    ],
)
def test_aliases(alias: str, expected: list[str]) -> None:
    assert utc_list(CronTrigger(alias).next_fire_times(utc("2026-05-15 10:30"), 2)) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 9 * * mon-fri", ["2026-05-15 09:00", "2026-05-18 09:00", "2026-05-19 09:00"]),
        ("0 9 * * 5-7", ["2026-05-15 09:00", "2026-05-16 09:00", "2026-05-17 09:00"]),
        ("0 0 * JAN,jul *", ["2026-07-01 00:00", "2026-07-02 00:00", "2026-07-03 00:00"]),
        # day-of-month OR day-of-week when both are restricted (cron's rule)
        ("0 0 1,20 * 1", ["2026-05-18 00:00", "2026-05-20 00:00", "2026-05-25 00:00"]),
        ("0 0 29 2 *", ["2028-02-29 00:00", "2032-02-29 00:00", "2036-02-29 00:00"]),
        ("15-45/15 8 * * *", ["2026-05-15 08:15", "2026-05-15 08:30", "2026-05-15 08:45"]),
    ],
)
def test_fields(expression: str, expected: list[str]) -> None:
    after = utc("2026-05-15 00:00")  # a Friday
    assert utc_list(CronTrigger(expression).next_fire_times(after, 3)) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 0 * * * *", r"has 6 field\(s\).*seconds and years are not supported"),
        ("0 0 0 * * * 2026", r"has 7 field\(s\)"),
        ("* * *", r"'\* \* \*' has 3 field\(s\); use 5 fields"),
        ("", r"has 0 field\(s\)"),
        ("0 0 L * *", r"day-of-month 'L' uses 'L' \(last\)"),
        ("0 0 * * 5L", r"day-of-week '5L' uses 'L' \(last\)"),
        ("0 0 * * 1#2", r"day-of-week '1#2' uses '#' \(nth weekday\)"),
        ("0 0 15W * *", r"day-of-month '15W' uses 'W' \(nearest weekday\)"),
        ("0 0 ? * 1", r"day-of-month '\?' uses '\?'"),
        ("H * * * *", r"minute 'H' uses 'H' \(hashed value\)"),
        ("60 * * * *", r"minute 60 is out of range; use 0-59"),
        ("0 24 * * *", r"hour 24 is out of range; use 0-23"),
        ("0 0 0 * *", r"day-of-month 0 is out of range; use 1-31"),
        ("0 0 * 13 *", r"month 13 is out of range; use 1-12"),
        ("0 0 * * 8", r"day-of-week 8 is out of range; use 0-7"),
        ("5-1 * * * *", r"minute range '5-1' goes backwards"),
        ("5/15 * * * *", r"minute '5/15' is read differently.*write '5-59/15'"),
        ("*/0 * * * *", r"minute '\*/0' has a step of 0"),
        ("0 0 30 2 *", r"'0 0 30 2 \*' can never fire: no selected month has day 30"),
        ("0 0 */2 * 1", r"'and' to some cron parsers and 'or' to others"),
        ("@reboot", r"'@reboot': unknown shortcut; use one of @yearly"),
        ("abc * * * *", r"minute 'abc' is not a number"),
        ("0 0 * jan-foo *", r"month 'foo' is not a number \(or a name: jan"),
        ("1,,2 * * * *", r"cannot read minute ''"),
    ],
)
def test_refused_expressions(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        CronTrigger(expression)


def test_not_a_string_and_bad_timezones() -> None:
    with pytest.raises(CronError, match="must be a string"):
        CronTrigger(5)  # type: ignore[arg-type]
    with pytest.raises(CronError, match="unknown timezone 'Mars/Olympus'; use an IANA name"):
        CronTrigger("* * * * *", "Mars/Olympus")
    with pytest.raises(CronError, match=r"unknown timezone '\.\./etc'"):
        CronTrigger("* * * * *", "../etc")
    with pytest.raises(CronError, match="timezone must be an IANA name"):
        CronTrigger("* * * * *", "")
    assert issubclass(CronError, ValidationError)


def test_naive_datetimes_are_refused() -> None:
    trigger = CronTrigger("* * * * *")
    with pytest.raises(CronError, match="naive datetime; pass a timezone-aware one"):
        trigger.next_fire_time(datetime(2026, 1, 1))
    with pytest.raises(CronError, match="n must be a whole number"):
        trigger.next_fire_times(utc("2026-01-01 00:00"), -1)


def test_equality_and_repr() -> None:
    assert CronTrigger("*/5  * * * *", "UTC") == CronTrigger("*/5 * * * *", "UTC")
    assert CronTrigger("0 * * * *", "UTC") != CronTrigger("0 * * * *", "Europe/Paris")
    assert repr(CronTrigger("@daily", "Europe/Paris")) == (
        "CronTrigger('@daily', timezone='Europe/Paris')"
    )
    assert CronTrigger("0 9 * * *", "Europe/Paris").next_fire_time(
        utc("2026-06-01 00:00")
    ).utcoffset() == timedelta(hours=2)


# -- the DST policy ---------------------------------------------------------------------------

# (zone, expression, local day, expected UTC fire times that day)
FIXED_TIME_MATRIX = [
    # clocks go forward: a time in the gap runs at the first instant after it
    ("America/New_York", "30 2 * * *", date(2026, 3, 8), ["2026-03-08 07:00"]),
    ("America/New_York", "30 2 * * *", date(2026, 3, 9), ["2026-03-09 06:30"]),
    ("Europe/Paris", "30 2 * * *", date(2026, 3, 29), ["2026-03-29 01:00"]),
    ("Australia/Sydney", "30 2 * * *", date(2026, 10, 4), ["2026-10-03 16:00"]),
    ("America/Santiago", "30 0 * * *", date(2026, 9, 6), ["2026-09-06 04:00"]),
    ("Australia/Lord_Howe", "0 2 * * *", date(2026, 10, 4), ["2026-10-03 15:30"]),
    ("Australia/Lord_Howe", "15 2 * * *", date(2026, 10, 4), ["2026-10-03 15:30"]),
    # several times in one gap run once
    ("America/New_York", "*/15 2 * * *", date(2026, 3, 8), ["2026-03-08 07:00"]),
    (
        "America/New_York",
        "0,30 2-3 * * *",
        date(2026, 3, 8),
        ["2026-03-08 07:00", "2026-03-08 07:30"],
    ),
    # clocks go back: a repeated time runs once, at its first occurrence
    ("America/New_York", "30 1 * * *", date(2026, 11, 1), ["2026-11-01 05:30"]),
    ("America/New_York", "30 1 * * *", date(2026, 11, 2), ["2026-11-02 06:30"]),
    ("Europe/Paris", "30 2 * * *", date(2026, 10, 25), ["2026-10-25 00:30"]),
    ("Australia/Sydney", "30 2 * * *", date(2026, 4, 5), ["2026-04-04 15:30"]),
    ("America/Santiago", "30 23 * * *", date(2026, 4, 4), ["2026-04-05 02:30"]),
    ("Australia/Lord_Howe", "45 1 * * *", date(2026, 4, 5), ["2026-04-04 14:45"]),
    (
        "America/New_York",
        "*/20 1 * * *",
        date(2026, 11, 1),
        ["2026-11-01 05:00", "2026-11-01 05:20", "2026-11-01 05:40"],
    ),
]


@pytest.mark.parametrize(("zone", "expression", "day", "expected"), FIXED_TIME_MATRIX)
def test_fixed_time_jobs_across_dst(
    zone: str, expression: str, day: date, expected: list[str]
) -> None:
    start, end = local_day(zone, day)
    assert utc_list(CronTrigger(expression, zone).fire_times_between(start, end)) == expected


@pytest.mark.parametrize(
    "zone",
    [
        "America/New_York",
        "Europe/Paris",
        "Australia/Sydney",
        "America/Santiago",
        "Australia/Lord_Howe",
    ],
)
@pytest.mark.parametrize("wall", ["0 0", "30 1", "0 2", "30 2", "59 23"])
def test_fixed_time_runs_exactly_once_every_day_of_the_year(zone: str, wall: str) -> None:
    trigger = CronTrigger(f"{wall} * * *", zone)
    tz = ZoneInfo(zone)
    start = datetime(2026, 1, 1, tzinfo=tz)
    times = trigger.fire_times_between(
        start - timedelta(microseconds=1),
        datetime(2027, 1, 1, tzinfo=tz) - timedelta(microseconds=1),
    )
    assert len(times) == 365
    assert len({t.astimezone(tz).date() for t in times}) == 365
    assert times == sorted(times)


# (zone, local day, expected */5 count that day, gap or fold boundaries in UTC)
INTERVAL_MATRIX = [
    ("America/New_York", date(2026, 3, 8), 23 * 12, ["2026-03-08 06:55", "2026-03-08 07:00"]),
    ("America/New_York", date(2026, 11, 1), 25 * 12, ["2026-11-01 05:55", "2026-11-01 06:00"]),
    ("Europe/Paris", date(2026, 3, 29), 23 * 12, ["2026-03-29 00:55", "2026-03-29 01:00"]),
    ("Europe/Paris", date(2026, 10, 25), 25 * 12, ["2026-10-25 00:55", "2026-10-25 01:00"]),
    ("Australia/Sydney", date(2026, 10, 4), 23 * 12, ["2026-10-03 15:55", "2026-10-03 16:00"]),
    ("Australia/Sydney", date(2026, 4, 5), 25 * 12, ["2026-04-04 15:55", "2026-04-04 16:00"]),
    ("America/Santiago", date(2026, 9, 6), 23 * 12, []),
    (
        "Australia/Lord_Howe",
        date(2026, 10, 4),
        23 * 12 + 6,
        ["2026-10-03 15:25", "2026-10-03 15:30"],
    ),
    (
        "Australia/Lord_Howe",
        date(2026, 4, 5),
        24 * 12 + 6,
        ["2026-04-04 14:55", "2026-04-04 15:00"],
    ),
]


@pytest.mark.parametrize(("zone", "day", "count", "around"), INTERVAL_MATRIX)
def test_interval_jobs_run_at_every_real_matching_instant(
    zone: str, day: date, count: int, around: list[str]
) -> None:
    start, end = local_day(zone, day)
    times = CronTrigger("*/5 * * * *", zone).fire_times_between(start, end)
    assert len(times) == count
    steps = {b - a for a, b in itertools.pairwise(times)}
    assert steps == {timedelta(minutes=5)}  # nothing skipped, nothing doubled, across the change
    listed = utc_list(times)
    for instant in around:
        assert instant in listed


def test_interval_job_in_the_repeated_hour_fires_in_both_occurrences() -> None:
    trigger = CronTrigger("30 * * * *", "America/New_York")
    times = trigger.fire_times_between(utc("2026-11-01 04:00"), utc("2026-11-01 08:00"))
    assert [t.isoformat() for t in times] == [
        "2026-11-01T00:30:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-01T02:30:00-05:00",
    ]


def test_hourly_skips_the_missing_hour_only() -> None:
    trigger = CronTrigger("0 * * * *", "America/New_York")
    times = trigger.fire_times_between(utc("2026-03-08 05:00"), utc("2026-03-08 09:00"))
    assert [t.isoformat() for t in times] == [
        "2026-03-08T01:00:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T04:00:00-04:00",
        "2026-03-08T05:00:00-04:00",
    ]


def test_lord_howe_hourly_on_both_transitions() -> None:
    trigger = CronTrigger("0 * * * *", "Australia/Lord_Howe")
    spring = trigger.fire_times_between(utc("2026-10-03 13:00"), utc("2026-10-03 16:30"))
    assert [t.isoformat() for t in spring] == [
        "2026-10-04T00:00:00+10:30",  # 13:30Z
        "2026-10-04T01:00:00+10:30",  # 14:30Z; 02:00 does not exist
        "2026-10-04T03:00:00+11:00",  # 16:00Z
    ]
    autumn = trigger.fire_times_between(utc("2026-04-04 13:00"), utc("2026-04-04 17:00"))
    assert [t.isoformat() for t in autumn] == [
        "2026-04-05T01:00:00+11:00",  # 14:00Z; 01:00 exists once (the repeat is 01:30-02:00)
        "2026-04-05T02:00:00+10:30",  # 15:30Z
        "2026-04-05T03:00:00+10:30",  # 16:30Z
    ]


def test_next_fire_time_from_inside_a_gap_and_a_fold() -> None:
    daily = CronTrigger("30 2 * * *", "America/New_York")
    # 06:59Z is 01:59 EST, just before the jump: the gap time is still due at 07:00Z
    assert daily.next_fire_time(utc("2026-03-08 06:59")) == utc("2026-03-08 07:00")
    assert daily.next_fire_time(utc("2026-03-08 07:00")) == utc("2026-03-09 06:30")
    once = CronTrigger("30 1 * * *", "America/New_York")
    # from inside the second 01:00-02:00, the repeated 01:30 is not run again
    assert once.next_fire_time(utc("2026-11-01 06:10")) == utc("2026-11-02 06:30")
