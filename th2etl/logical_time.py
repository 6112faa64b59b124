"""LogicalTime: the moment a run is *for*, and its data interval (``${run:...}`` references).

A scheduled run is for its tick, not for the moment it happens to start: a daily load that fires
at 00:00 and runs late, or is backfilled a month later, still loads the same day. Semantics, in
one place:

* **Scheduled runs** (a scheduler's tick, a backfill, a dependency): ``scheduled_time`` is the
  fire time; the data interval runs from the trigger's *previous* fire time to this one
  (``interval_start`` < ``interval_end`` = ``scheduled_time``), computed in the trigger's time
  zone under its DST policy (:mod:`th2etl.scheduler.triggers`). A daily job at midnight in
  ``America/New_York`` fired on 2026-03-09 covers 2026-03-08T00:00-05:00 to
  2026-03-09T00:00-04:00: 23 hours, the whole local day.
* **Manual runs** (``th2etl run``, ``POST /pipelines/{name}/run``, ``storage.run_pipeline()``)
  are for their ``at`` argument, otherwise for the moment they start; their interval is empty
  (``interval_start`` = ``interval_end`` = ``scheduled_time`` = that moment).
* **References.** A string in a bloc config may use ``${run:NAME}`` or ``${run:NAME:FORMAT}``,
  resolved when the bloc runs, as ``${var:}`` is. ``NAME`` is one of :data:`RUN_NAMES`:
  ``scheduled_time``, ``interval_start``, ``interval_end`` (ISO 8601 strings in the schedule's
  time zone, with its offset) and ``date`` (the local date of ``interval_start``,
  ``YYYY-MM-DD``, as Airflow's ``ds``). ``FORMAT`` is a ``strftime`` format applied to that
  value: ``${run:interval_start:%Y-%m-%d}``, ``${run:date:%Y%m%d}``. An unknown name is refused
  when the bloc is stored, with the valid names.

>>> from datetime import datetime, UTC
>>> moment = LogicalTime.at(datetime(2026, 11, 25, 6, 30, tzinfo=UTC))
>>> moment.value("date"), moment.value("interval_end", "%H:%M")
('2026-11-25', '06:30')
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from datetime import date as Date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from th2etl.exceptions import ValidationError

__all__ = ["RUN_NAMES", "LogicalTime", "parse_instant"]

RUN_NAMES = ("date", "interval_end", "interval_start", "scheduled_time")
"""The names a ``${run:NAME}`` reference may use."""


def _zone(name: str) -> tzinfo:
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(
            f"logical time: unknown timezone {name!r}; use an IANA name such as 'UTC' or "
            "'Europe/Paris'"
        ) from None


@dataclass(frozen=True, slots=True)
class LogicalTime:
    """The logical time of one run (see the module docstring). Datetimes are aware, shown in
    ``timezone`` (an IANA name), or with the offsets they were given when it is ``None``."""

    scheduled_time: datetime
    interval_start: datetime
    interval_end: datetime
    timezone: str | None = None

    def __post_init__(self) -> None:
        for name in ("scheduled_time", "interval_start", "interval_end"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise ValidationError(
                    f"logical time: {name} must be a timezone-aware datetime, got {value!r}"
                )
        if self.interval_start > self.interval_end:
            raise ValidationError(
                f"logical time: interval_start {self.interval_start.isoformat()} is after "
                f"interval_end {self.interval_end.isoformat()}"
            )
        if self.timezone is None:
            return
        zone = _zone(self.timezone)
        for name in ("scheduled_time", "interval_start", "interval_end"):
            # astimezone() sets fold, so a repeated wall-clock hour keeps its own offset.
            object.__setattr__(self, name, getattr(self, name).astimezone(zone))

    @classmethod
    def at(cls, moment: datetime, timezone: str | None = None) -> LogicalTime:
        """A manual run's logical time: ``moment``, with an empty interval, shown in
        ``timezone`` (default: the zone or offset ``moment`` carries)."""
        if not isinstance(moment, datetime) or moment.utcoffset() is None:
            raise ValidationError(
                f"a run's 'at' must be a timezone-aware datetime (e.g. "
                f"2026-11-25T00:00:00+00:00), got {moment!r}"
            )
        return cls(moment, moment, moment, timezone or getattr(moment.tzinfo, "key", None))

    @property
    def date(self) -> Date:
        """The local date of ``interval_start`` (Airflow's ``ds``)."""
        return self.interval_start.date()

    def value(self, name: str, format: str | None = None) -> str:
        """The ``${run:NAME}`` / ``${run:NAME:FORMAT}`` text for this run."""
        if name not in RUN_NAMES:
            raise ValidationError(unknown_run_name(name))
        moment: Date | datetime = self.date if name == "date" else getattr(self, name)
        return moment.isoformat() if format is None else moment.strftime(format)

    def to_dict(self) -> dict[str, Any]:
        """Every ``${run:}`` value and the time zone, JSON-ready."""
        return {**{name: self.value(name) for name in RUN_NAMES}, "timezone": self.timezone}


def unknown_run_name(name: str) -> str:
    return (
        f"unknown run value {name!r} in ${{run:{name}}}; valid names: "
        f"{', '.join(RUN_NAMES)} (e.g. ${{run:date}} or ${{run:interval_start:%Y-%m-%d}})"
    )


def parse_instant(text: str, what: str, timezone: str | None = None) -> datetime:
    """An ISO 8601 date or date-time typed by a person (``--at``, ``--from``): one without an
    offset is read in ``timezone`` (default UTC), a bare date as its midnight there."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except (AttributeError, ValueError):
        raise ValidationError(
            f"{what} {text!r} is not an ISO 8601 date or date-time; write e.g. 2026-11-25 or "
            "2026-11-25T06:00:00+01:00"
        ) from None
    if moment.utcoffset() is None:
        moment = moment.replace(tzinfo=_zone(timezone or "UTC"))
    return moment
