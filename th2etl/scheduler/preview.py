"""The next fire times of a trigger with a note where its zone's clocks change: what
``th2etl next`` prints and the dashboard's schedulers page shows.

A fixed time that does not exist that day runs at the first instant after the gap, a time that
occurs twice runs once (interval jobs run in both occurrences), and a run after a change of UTC
offset says so. The policy itself is stated once, in :mod:`th2etl.scheduler.triggers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from th2etl.scheduler.triggers import CronTrigger

if TYPE_CHECKING:
    from th2etl.types import JSON

__all__ = ["FireTime", "fire_times", "utc_offset"]


@dataclass(frozen=True)
class FireTime:
    """One fire time, in the trigger's zone, with a DST note or ``None``."""

    at: datetime
    note: str | None

    def to_dict(self) -> JSON:
        return {
            "local": self.at.isoformat(),
            "utc": self.at.astimezone(UTC).isoformat(),
            "note": self.note,
        }


def utc_offset(offset: timedelta | None) -> str:
    """``+HH:MM`` / ``-HH:MM`` of a UTC offset (``None`` is ``+00:00``)."""
    minutes = int((offset or timedelta()).total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def fire_times(trigger: CronTrigger, after: datetime, n: int) -> list[FireTime]:
    """The next ``n`` fire times of ``trigger`` after ``after``, each with its DST note."""
    zone = trigger.timezone
    wall_clock = CronTrigger(trigger.expression, "UTC")  # the same schedule without DST
    previous = after.astimezone(zone).utcoffset()
    result = []
    for instant in trigger.next_fire_times(after, n):
        local = instant.astimezone(zone)
        wall = local.replace(tzinfo=None)
        offset = local.utcoffset()
        just_before = (instant - timedelta(seconds=1)).astimezone(zone).utcoffset()
        as_utc = wall.replace(tzinfo=UTC)
        on_schedule = wall_clock.next_fire_time(as_utc - timedelta(microseconds=1)) == as_utc
        note = None
        if not on_schedule and just_before != offset:
            # Moved out of a gap: the wall-clock time it was due at did not exist.
            gap_from = instant.astimezone(UTC).replace(tzinfo=None) + (just_before or timedelta())
            note = (
                f"DST: clocks go forward from {gap_from:%H:%M} to {wall:%H:%M} on "
                f"{wall:%Y-%m-%d}; the time due in the skipped hour runs at {wall:%H:%M}, "
                "the first instant after the gap"
            )
        elif local.replace(fold=1 - local.fold).utcoffset() != offset:
            if trigger.interval:
                which = "first" if local.fold == 0 else "second"
                runs = f"interval jobs run in both, this is the {which}"
            else:
                runs = "runs once, at the first"
            note = (
                f"DST: {wall:%H:%M} occurs twice on {wall:%Y-%m-%d} (clocks go back); {runs} "
                f"({utc_offset(offset)})"
            )
        elif offset != previous:
            way = "forward" if (offset or timedelta()) > (previous or timedelta()) else "back"
            note = (
                f"DST: clocks went {way} since the previous fire time (UTC offset "
                f"{utc_offset(previous)} -> {utc_offset(offset)})"
            )
        previous = offset
        result.append(FireTime(instant, note))
    return result
