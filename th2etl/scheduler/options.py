"""Per-schedule options: what each is, its range, and which value wins.

A stored scheduler carries its own options (storage, ``/schedulers`` and ``th2etl schedule``):

* ``variables`` -- run variables (``${var:NAME}``) for its runs. Not secrets: ``${env:NAME}``
  stays the way for those.
* ``missed`` -- the :class:`~th2etl.scheduler.MissedTickPolicy` (``skip``, ``latest``, ``all``).
* ``overlap`` -- the :class:`~th2etl.scheduler.OverlapPolicy` (``skip``, ``allow``).
* ``max_active_runs`` -- at most this many runs of the schedule queued or running at once,
  manual, backfill and dependency runs included (1 to 10,000); a tick due while the limit is
  reached is recorded ``skipped`` with reason ``max_active_runs`` (a backfill can fill it later).
* ``timeout`` -- seconds a whole run may take, overriding the pipeline's own (more than 0, at
  most 7 days).
* ``start_date`` / ``end_date`` -- no tick before ``start_date`` or after ``end_date`` fires or
  counts as missed (aware datetimes, ``start_date`` before ``end_date``).
* ``enabled`` -- a disabled schedule does not fire; a backfill of it still runs (and says so).

**Which value wins.** An option the scheduler sets wins; else the database-wide default
(:meth:`~th2etl.storage.base.Storage.get_schedule_defaults`, one stored row, so every process
agrees); else the option given to :func:`~th2etl.scheduler.load_scheduler_manager` (kept for
embedded use: a program that runs its own manager); else the built-in default (``latest``,
``skip``, no limit, no timeout). Changes take effect at the next tick, through hot reload.
Every value is checked before it is stored: out of range is refused with the range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from th2etl.exceptions import ValidationError
from th2etl.scheduler.policies import MissedTickPolicy, OverlapPolicy

__all__ = [
    "MAX_ACTIVE_LIMIT",
    "MAX_TIMEOUT",
    "ScheduleDefaults",
    "ScheduleOptions",
    "check_options",
]

MAX_ACTIVE_LIMIT = 10_000
MAX_TIMEOUT = 7 * 24 * 3600.0
"""The largest pipeline-level timeout a schedule may set, in seconds (7 days)."""


@dataclass(frozen=True, slots=True)
class ScheduleDefaults:
    """The options a schedule may leave unset; ``None`` means "not set here"."""

    missed: MissedTickPolicy | None = None
    overlap: OverlapPolicy | None = None
    max_active_runs: int | None = None
    timeout: float | None = None

    def over(self, other: ScheduleDefaults) -> ScheduleDefaults:
        """These values, with ``other``'s where these are unset."""
        return ScheduleDefaults(
            **{
                f.name: getattr(other, f.name)
                if getattr(self, f.name) is None
                else getattr(self, f.name)
                for f in fields(ScheduleDefaults)
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(ScheduleDefaults)}


BUILT_IN = ScheduleDefaults(MissedTickPolicy.LATEST, OverlapPolicy.SKIP)


@dataclass(frozen=True, slots=True)
class ScheduleOptions(ScheduleDefaults):
    """A scheduler's own options (see the module docstring)."""

    variables: dict[str, Any] = field(default_factory=dict)
    start_date: datetime | None = None
    end_date: datetime | None = None

    def effective(self, *layers: ScheduleDefaults) -> ScheduleOptions:
        """These options with every unset one taken from ``layers``, first layer first."""
        merged: ScheduleDefaults = self
        for layer in layers:
            merged = merged.over(layer)
        return replace(self, **merged.to_dict())

    def in_range(self, moment: datetime) -> bool:
        """Whether a tick at ``moment`` is within ``start_date`` .. ``end_date``."""
        if self.start_date is not None and moment < self.start_date:
            return False
        return self.end_date is None or moment <= self.end_date


OPTION_NAMES = tuple(f.name for f in fields(ScheduleOptions))


def _aware(owner: str, name: str, value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(
                f"{owner}: {name} {value!r} is not an ISO 8601 date-time; write e.g. "
                "2026-01-01T00:00:00+00:00"
            ) from None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValidationError(
            f"{owner}: {name} must be a timezone-aware date-time (e.g. "
            f"2026-01-01T00:00:00+00:00), got {value!r}"
        )
    return value


def _policy(owner: str, enum: type[Any], name: str, value: Any) -> Any:
    if value is None:
        return None
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in enum)
        raise ValidationError(f"{owner}: {name} {value!r} is not one of {choices}") from None


def _max_active(owner: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ACTIVE_LIMIT:
        raise ValidationError(
            f"{owner}: max_active_runs must be a whole number from 1 to {MAX_ACTIVE_LIMIT}, "
            f"got {value!r}"
        )
    return value


def _timeout(owner: str, value: Any) -> float | None:
    if value is None:
        return None
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or not 0 < number <= MAX_TIMEOUT:
        raise ValidationError(
            f"{owner}: timeout must be a number of seconds more than 0 and at most "
            f"{MAX_TIMEOUT:g} (7 days), got {value!r}"
        )
    return float(number)


def check_defaults(owner: str, values: Mapping[str, Any]) -> ScheduleDefaults:
    """The defaults in ``values`` (missing keys: unset), checked."""
    unknown = [key for key in values if key not in {f.name for f in fields(ScheduleDefaults)}]
    if unknown:
        raise ValidationError(
            f"{owner}: unknown option {unknown[0]!r}; defaults are: missed, overlap, "
            "max_active_runs, timeout"
        )
    return ScheduleDefaults(
        missed=_policy(owner, MissedTickPolicy, "missed", values.get("missed")),
        overlap=_policy(owner, OverlapPolicy, "overlap", values.get("overlap")),
        max_active_runs=_max_active(owner, values.get("max_active_runs")),
        timeout=_timeout(owner, values.get("timeout")),
    )


def check_options(owner: str, values: Mapping[str, Any]) -> ScheduleOptions:
    """The options in ``values`` (missing keys: unset), checked; ``owner`` starts messages
    (``scheduler 'daily'``)."""
    unknown = [key for key in values if key not in OPTION_NAMES]
    if unknown:
        raise ValidationError(
            f"{owner}: unknown option {unknown[0]!r}; options are: {', '.join(OPTION_NAMES)}"
        )
    defaults = check_defaults(
        owner, {k: v for k, v in values.items() if k not in ("variables", "start_date", "end_date")}
    )
    variables = values.get("variables")
    if variables is None:
        variables = {}
    if not isinstance(variables, Mapping) or not all(isinstance(k, str) for k in variables):
        raise ValidationError(
            f"{owner}: variables must be an object with string keys, e.g. "
            f'{{"region": "north"}}, got {variables!r}'
        )
    start = _aware(owner, "start_date", values.get("start_date"))
    end = _aware(owner, "end_date", values.get("end_date"))
    if start is not None and end is not None and start >= end:
        raise ValidationError(
            f"{owner}: start_date {start.isoformat()} is not before end_date {end.isoformat()}; "
            "swap them or leave one unset"
        )
    return ScheduleOptions(
        **defaults.to_dict(), variables=dict(variables), start_date=start, end_date=end
    )
