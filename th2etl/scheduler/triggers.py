"""CronTrigger: when a schedule fires, as exact instants, with a stated DST policy.

A trigger is a standard 5-field cron expression (``minute hour day-of-month month
day-of-week``) or one of ``@hourly``, ``@daily`` (``@midnight``), ``@weekly``, ``@monthly``,
``@yearly`` (``@annually``), read as wall-clock time in an IANA ``timezone`` (default UTC).

Fields accept numbers, ``*``, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, lists ``a,b``, month
names ``jan``-``dec`` and day names ``sun``-``sat`` (``0`` and ``7`` are Sunday). When both
day-of-month and day-of-week are restricted, a day matches if either matches (as in cron).
Anything a cron parser might read differently is refused with a :class:`CronError` rather than
guessed: seconds or year fields (6 or 7 fields), ``L``, ``W``, ``#``, ``?``, ``H``, out-of-range
values, reversed ranges, ``a/n`` without an end, a step over a restricted day field paired
with the other day field, and expressions that can never fire.

The DST policy (croniter is used only to double-check the parse; the mapping from wall-clock
time to instants is done here, because croniter's own DST handling runs some jobs twice or
never):

* **Fixed-time jobs** (the hour field is not ``*``, e.g. ``30 2 * * *``) run once per matching
  wall-clock time per scheduled day:

  - a time that exists once runs at that instant;
  - a time that does not exist (clocks go forward, e.g. 02:30 in New York on the second Sunday
    of March) runs at the first instant after the gap (03:00 EDT there); several times inside
    the same gap run once, at that instant;
  - a time that occurs twice (clocks go back, e.g. 01:30 in New York on the first Sunday of
    November) runs once, at its first occurrence (``fold=0``, 01:30 EDT).

* **Interval jobs** (the hour field is ``*``, e.g. ``*/5 * * * *``, ``0 * * * *``) run at every
  real instant whose local time matches: during the repeated hour they run in both
  occurrences, and the skipped wall-clock times simply do not happen (nothing extra is skipped
  and nothing is moved).

Fire times are aware datetimes carrying the zone's UTC offset at that instant (a fixed-offset
tzinfo, so comparing and subtracting them is exact even across a DST change).
``next_fire_time(after)`` is strictly after ``after``, ``previous_fire_time(before)`` strictly
before ``before``; ``fire_times_between(start, end)`` gives ``start < t <= end``. A run's data
interval is from the previous fire time to its own (``logical_time(t)``, see
:mod:`th2etl.logical_time`), so across a DST change a daily job's interval is the whole local day
(23 or 25 hours).

>>> from datetime import datetime, UTC
>>> trigger = CronTrigger("30 2 * * *", "America/New_York")
>>> trigger.next_fire_time(datetime(2026, 3, 8, 5, 0, tzinfo=UTC)).isoformat()
'2026-03-08T03:00:00-04:00'
"""

from __future__ import annotations

import bisect
import heapq
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from datetime import timezone as fixed_offset
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from th2etl.exceptions import CronError
from th2etl.logical_time import LogicalTime

__all__ = ["ALIASES", "CronTrigger"]

ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The ``@`` shortcuts understood, and the expression each stands for."""

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# name, lowest, highest, names
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, {m: i for i, m in enumerate(_MONTHS, start=1)}),
    ("day-of-week", 0, 7, {d: i for i, d in enumerate(_WEEKDAYS)}),
)
_ATOM = re.compile(r"^(?:\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/[0-9]+)?$")
_MAX_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DAY = timedelta(days=1)
# Feb 29 on a Monday can be 28 years away; give up (a bug, not a schedule) well beyond that.
_SEARCH_DAYS = 366 * 30
_CACHE_DAYS = 64
_FIXED: dict[timedelta, tzinfo] = {}


def _resolve_zone(expression: str, timezone: str | tzinfo) -> tzinfo:
    if isinstance(timezone, tzinfo):
        return timezone
    if not isinstance(timezone, str) or not timezone.strip():
        raise CronError(
            f"cron trigger {expression!r}: timezone must be an IANA name such as 'UTC' or "
            f"'Europe/Paris', got {timezone!r}"
        )
    try:
        return ZoneInfo(timezone.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(
            f"cron trigger {expression!r}: unknown timezone {timezone!r}; use an IANA name "
            "such as 'UTC', 'Europe/Paris' or 'America/New_York'"
        ) from None


def _value(
    expression: str, field: str, token: str, low: int, high: int, names: dict[str, int]
) -> int:
    if token.isdigit():
        number = int(token)
    elif token in names:
        number = names[token]
    else:
        known = f" (or a name: {', '.join(names)})" if names else ""
        raise CronError(f"cron expression {expression!r}: {field} {token!r} is not a number{known}")
    if not low <= number <= high:
        raise CronError(
            f"cron expression {expression!r}: {field} {number} is out of range; use {low}-{high}"
        )
    return number


def _parse_field(expression: str, index: int, text: str) -> tuple[frozenset[int], bool]:
    """The values one field allows, and whether it is unrestricted (``*``)."""
    field, low, high, names = _FIELDS[index]
    if text == "*":
        values = range(low, high + 1)
        return frozenset(0 if index == 4 and v == 7 else v for v in values), True
    result: set[int] = set()
    for original in text.split(","):
        part = original.lower()
        for bad, meaning in (
            ("?", "'?' (no specific value)"),
            ("l", "'L' (last)"),
            ("w", "'W' (nearest weekday)"),
            ("#", "'#' (nth weekday)"),
            ("h", "'H' (hashed value)"),
        ):
            if bad in part and not (bad in "lwh" and any(n in part for n in names)):
                raise CronError(
                    f"cron expression {expression!r}: {field} {original!r} uses {meaning}, which "
                    "th2etl does not support; write the values explicitly (e.g. '1,15' or "
                    "'1-5')"
                )
        if not part or not _ATOM.match(part):
            raise CronError(
                f"cron expression {expression!r}: cannot read {field} {original!r}; use a number, "
                "'*', a range 'a-b', a step '*/n' or 'a-b/n', or a list 'a,b'"
            )
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            step = int(step_text)
            if step == 0:
                raise CronError(
                    f"cron expression {expression!r}: {field} {original!r} has a step of 0; "
                    "use a step of 1 or more"
                )
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, last = base.split("-")
            start = _value(expression, field, first, low, high, names)
            end = _value(expression, field, last, low, high, names)
            if start > end:
                raise CronError(
                    f"cron expression {expression!r}: {field} range {base!r} goes backwards; "
                    f"write it as two ranges (e.g. '{first}-{high},{low}-{last}')"
                )
        else:
            start = end = _value(expression, field, base, low, high, names)
            if step_text:
                raise CronError(
                    f"cron expression {expression!r}: {field} {original!r} is read differently "
                    f"by different cron implementations; write '{base}-{high}/{step}'"
                )
        result.update(range(start, end + 1, step))
    if index == 4 and 7 in result:
        result.discard(7)
        result.add(0)
    return frozenset(result), False


def _normalise_expression(expression: str) -> str:
    if not isinstance(expression, str):
        raise CronError(
            f"cron expression must be a string such as '*/5 * * * *', got {expression!r}"
        )
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise CronError(
                f"cron expression {expression!r}: unknown shortcut; use one of "
                f"{', '.join(ALIASES)} or 5 fields 'minute hour day-of-month month day-of-week'"
            )
        return ALIASES[text.lower()]
    count = len(text.split(" ")) if text else 0
    if count != 5:
        hint = (
            " (th2etl schedules by the minute: seconds and years are not supported)"
            if count in (6, 7)
            else ""
        )
        raise CronError(
            f"cron expression {expression!r} has {count} field(s); use 5 fields "
            f"'minute hour day-of-month month day-of-week', e.g. '*/5 * * * *'{hint}"
        )
    return text


def _cross_check(expression: str, text: str, sets: list[frozenset[int]]) -> None:
    """Refuse an expression croniter reads differently from th2etl (a reinterpretation)."""
    from croniter import croniter  # with dateutil about 9 ms to import: when a trigger is made

    try:
        expanded, nth = croniter.expand(text)
    except Exception as exc:  # croniter raises several unrelated types
        raise CronError(f"cron expression {expression!r} is not valid: {exc}") from None
    for index, values in enumerate(expanded[:5]):
        theirs = (
            sets[index]
            if values == ["*"]
            else frozenset(0 if index == 4 and v == 7 else int(v) for v in values)
        )
        if nth or theirs != sets[index]:
            raise CronError(
                f"cron expression {expression!r}: the {_FIELDS[index][0]} field is read "
                "ambiguously by cron parsers; write it as explicit values"
            )


class CronTrigger:
    """A cron schedule in a timezone; see the module docstring for syntax and DST policy.

    >>> trigger = CronTrigger("*/5 * * * *")
    >>> [t.strftime("%H:%M") for t in trigger.next_fire_times(
    ...     datetime(2026, 1, 1, 12, 1, tzinfo=UTC), 3)]
    ['12:05', '12:10', '12:15']
    """

    def __init__(self, expression: str, timezone: str | tzinfo = "UTC") -> None:
        text = _normalise_expression(expression)
        parts = text.split(" ")
        parsed = [_parse_field(expression, i, part) for i, part in enumerate(parts)]
        sets = [values for values, _ in parsed]
        stars = [star for _, star in parsed]
        dom_star, dow_star = stars[2], stars[4]
        if not dom_star and not dow_star and (parts[2].startswith("*") or parts[4].startswith("*")):
            raise CronError(
                f"cron expression {expression!r}: a '*/n' step in day-of-month or day-of-week "
                "next to a restricted other day field means 'and' to some cron parsers and 'or' "
                "to others; list the days explicitly"
            )
        _cross_check(expression, text.lower(), sets)
        if dow_star and not any(
            day <= _MAX_DAYS[month - 1] for month in sets[3] for day in sets[2]
        ):
            raise CronError(
                f"cron expression {expression!r} can never fire: no selected month has "
                f"day {', '.join(map(str, sorted(sets[2])))}"
            )
        self.expression = " ".join(expression.split())
        self.timezone = _resolve_zone(expression, timezone)
        self.timezone_name = str(getattr(self.timezone, "key", self.timezone))
        self._minutes = sorted(sets[0])
        self._hours = sorted(sets[1])
        self._days, self._months, self._weekdays = sets[2], sets[3], sets[4]
        self._dom_star, self._dow_star = dom_star, dow_star
        self._wall_times = [time(h, m) for h in self._hours for m in self._minutes]
        self.interval = stars[1]
        """True when the hour field is ``*``: the job runs at every real matching instant."""
        self._cache: OrderedDict[date, tuple[datetime, ...]] = OrderedDict()
        self._lock = threading.Lock()

    # -- matching days -------------------------------------------------------------------

    def _day_matches(self, day: date) -> bool:
        if day.month not in self._months:
            return False
        dom = day.day in self._days
        dow = (day.weekday() + 1) % 7 in self._weekdays
        if self._dom_star or self._dow_star:
            return dom and dow
        return dom or dow

    # -- wall-clock time to instants ----------------------------------------------------------

    def _lower_bound(self, day: date) -> datetime:
        """No fire time of ``day`` or later days is before this instant."""
        wall = datetime.combine(day, time(0))
        first = wall.replace(tzinfo=self.timezone).astimezone(UTC)
        second = wall.replace(tzinfo=self.timezone, fold=1).astimezone(UTC)
        return min(first, second)

    def _gap_end(self, before: datetime, after: datetime) -> datetime:
        """The instant the clocks jump, between two UTC instants around a gap."""
        target = after.astimezone(self.timezone).utcoffset()
        low, high = before, after  # offset(low) != target, offset(high) == target
        while high - low > timedelta(seconds=1):
            middle = low + (high - low) / 2
            middle = middle.replace(microsecond=0)
            if middle <= low:
                break
            if middle.astimezone(self.timezone).utcoffset() == target:
                high = middle
            else:
                low = middle
        return high

    def _instants(self, day: date) -> tuple[datetime, ...]:
        """Every fire instant (UTC) of the wall-clock times of ``day``, sorted, per the policy."""
        with self._lock:
            cached = self._cache.get(day)
            if cached is not None:
                self._cache.move_to_end(day)
                return cached
        instants: set[datetime] = set()
        zone = self.timezone
        start = datetime.combine(day, time(0)).replace(tzinfo=zone).astimezone(UTC)
        end = datetime.combine(day + _DAY, time(0)).replace(tzinfo=zone).astimezone(UTC)
        noon = datetime.combine(day, time(12)).replace(tzinfo=zone)
        offset = start.astimezone(zone).utcoffset()
        steady = (
            end - start == _DAY
            and offset == end.astimezone(zone).utcoffset()
            and offset == noon.utcoffset()
        )
        if steady and offset is not None:
            base = datetime.combine(day, time(0), tzinfo=UTC) - offset
            for wall in self._wall_times:
                instants.add(base + timedelta(hours=wall.hour, minutes=wall.minute))
        else:
            for wall_time in self._wall_times:
                instants.update(self._map_wall(datetime.combine(day, wall_time)))
        result = tuple(sorted(instants))
        with self._lock:
            self._cache[day] = result
            if len(self._cache) > _CACHE_DAYS:
                self._cache.popitem(last=False)
        return result

    def _map_wall(self, wall: datetime) -> list[datetime]:
        zone = self.timezone
        first = wall.replace(tzinfo=zone).astimezone(UTC)
        second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        first_ok = first.astimezone(zone).replace(tzinfo=None) == wall
        second_ok = second.astimezone(zone).replace(tzinfo=None) == wall
        if first_ok and second_ok and first != second:  # occurs twice (clocks went back)
            return [first, second] if self.interval else [first]
        if first_ok or second_ok:
            return [first if first_ok else second]
        # In a gap (clocks went forward): interval jobs have no such instant.
        if self.interval:
            return []
        return [self._gap_end(min(first, second), max(first, second))]

    def _iter_after(self, after: datetime) -> Iterator[datetime]:
        if after.tzinfo is None or after.utcoffset() is None:
            raise CronError(
                f"cron trigger {self.expression!r}: {after!r} is a naive datetime; pass a "
                "timezone-aware one (e.g. datetime.now(UTC) or clock.now())"
            )
        after_utc = after.astimezone(UTC)
        # A day's gap-moved times may land after the next day's start: hold candidates in a
        # heap until no later day can produce an earlier instant.
        day = after_utc.astimezone(self.timezone).date() - _DAY
        # (instant, day ordinal, index in that day's sorted instants): a k-way merge.
        pending: list[tuple[datetime, int, int]] = []
        lists: dict[int, tuple[datetime, ...]] = {}
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                instants = self._instants(day)
                index = bisect.bisect_right(instants, after_utc)
                if index < len(instants):
                    lists[day.toordinal()] = instants
                    heapq.heappush(pending, (instants[index], day.toordinal(), index))
            day += _DAY
            if not pending:
                continue
            bound = self._lower_bound(day)
            while pending and pending[0][0] < bound:
                instant, key, index = heapq.heappop(pending)
                if index + 1 < len(lists[key]):
                    heapq.heappush(pending, (lists[key][index + 1], key, index + 1))
                yield self._present(instant)
        while pending:
            instant, key, index = heapq.heappop(pending)
            if index + 1 < len(lists[key]):
                heapq.heappush(pending, (lists[key][index + 1], key, index + 1))
            yield self._present(instant)

    def _present(self, instant: datetime) -> datetime:
        # A fixed-offset tzinfo, not the zone: Python compares and subtracts two datetimes that
        # share a tzinfo by wall-clock time, ignoring fold, which is wrong around DST changes.
        offset = instant.astimezone(self.timezone).utcoffset() or timedelta(0)
        fixed = _FIXED.get(offset)
        if fixed is None:
            fixed = _FIXED.setdefault(offset, fixed_offset(offset))
        return instant.astimezone(fixed)

    # -- public ----------------------------------------------------------------------------

    def next_fire_time(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after`` (aware), in the trigger's timezone."""
        for instant in self._iter_after(after):
            return instant
        raise CronError(  # unreachable for an accepted expression; kept as a clear failure
            f"cron trigger {self.expression!r} has no fire time within {_SEARCH_DAYS} days "
            f"after {after.isoformat()}"
        )

    def iter_fire_times(self, after: datetime) -> Iterator[datetime]:
        """Every fire time strictly after ``after``, in order, lazily (an endless iterator)."""
        return self._iter_after(after)

    def previous_fire_time(self, before: datetime) -> datetime:
        """The last fire time strictly before ``before`` (aware), in the trigger's timezone."""
        if before.tzinfo is None or before.utcoffset() is None:
            raise CronError(
                f"cron trigger {self.expression!r}: {before!r} is a naive datetime; pass a "
                "timezone-aware one"
            )
        window = timedelta(hours=1)
        while window <= _DAY * _SEARCH_DAYS:
            found: datetime | None = None
            for instant in self._iter_after(before - window):
                if instant >= before:
                    break
                found = instant
            if found is not None:
                return found
            window *= 4
        raise CronError(  # unreachable for an accepted expression; kept as a clear failure
            f"cron trigger {self.expression!r} has no fire time within {_SEARCH_DAYS} days "
            f"before {before.isoformat()}"
        )

    def logical_time(self, fire_time: datetime, previous: datetime | None = None) -> LogicalTime:
        """The logical time of the run for ``fire_time``: its data interval runs from the
        previous fire time (``previous`` when the caller knows it) to ``fire_time``, shown in
        the trigger's timezone (see :mod:`th2etl.logical_time`)."""
        start = previous if previous is not None else self.previous_fire_time(fire_time)
        zone = getattr(self.timezone, "key", None) or ("UTC" if self.timezone is UTC else None)
        return LogicalTime(fire_time, start, fire_time, zone)

    def next_fire_times(self, after: datetime, n: int) -> list[datetime]:
        """The next ``n`` fire times strictly after ``after``, in order (a preview)."""
        if not isinstance(n, int) or n < 0:
            raise CronError(
                f"cron trigger {self.expression!r}: n must be a whole number >= 0, got {n!r}"
            )
        result: list[datetime] = []
        if n == 0:
            return result
        for instant in self._iter_after(after):
            result.append(instant)
            if len(result) == n:
                break
        return result

    def fire_times_between(self, start: datetime, end: datetime) -> list[datetime]:
        """Every fire time ``t`` with ``start < t <= end``, in order."""
        if end.tzinfo is None or end.utcoffset() is None:
            raise CronError(
                f"cron trigger {self.expression!r}: end {end!r} is a naive datetime; pass a "
                "timezone-aware one"
            )
        result: list[datetime] = []
        if end <= start:
            return result
        for instant in self._iter_after(start):
            if instant > end:
                break
            result.append(instant)
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronTrigger):
            return NotImplemented
        return (self.expression, self.timezone_name) == (other.expression, other.timezone_name)

    def __hash__(self) -> int:
        return hash((self.expression, self.timezone_name))

    def __repr__(self) -> str:
        return f"CronTrigger({self.expression!r}, timezone={self.timezone_name!r})"
