"""What a scheduler decides, and how its settings are checked: the policy enums,
:class:`TickResult`, and which due ticks run under the missed-tick policy
(:func:`due_ticks`, :func:`plan_ticks`). The policies are described, in one place, in
:mod:`th2etl.scheduler.scheduler`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from th2etl.exceptions import ValidationError
from th2etl.pipelines.result import RunResult
from th2etl.types import JSON

if TYPE_CHECKING:
    from th2etl.scheduler.triggers import CronTrigger

__all__ = [
    "MissedTickPolicy",
    "OverlapPolicy",
    "SkipReason",
    "TickAction",
    "TickResult",
    "due_ticks",
    "plan_ticks",
]


class MissedTickPolicy(StrEnum):
    """What to do with ticks that were missed (see the module docstring)."""

    SKIP = "skip"
    LATEST = "latest"
    ALL = "all"


class OverlapPolicy(StrEnum):
    """What to do with a tick due while the scheduler's previous run is still going."""

    SKIP = "skip"
    ALLOW = "allow"


class TickAction(StrEnum):
    """What a scheduler did with one scheduled time."""

    STARTED = "started"
    """A run was started (and, on a fake clock, finished: see ``TickResult.result``)."""
    SKIPPED = "skipped"
    """Not run; ``reason`` says why (recorded as a ``skipped`` run when storage is attached)."""
    TAKEN = "taken"
    """Another instance already holds this tick (it runs or skipped it there)."""
    DEFERRED = "deferred"
    """The database could not be reached; the tick is handled again when it can."""
    FAILED = "failed"
    """The run could not start (e.g. its stored pipeline no longer builds); recorded failed."""


class SkipReason(StrEnum):
    MISSED = "missed"
    OVERLAP = "overlap"
    MAX_ACTIVE = "max_active_runs"
    """The schedule's ``max_active_runs`` runs were queued or running already."""


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one scheduler did with one scheduled time."""

    scheduler_name: str
    scheduled_time: datetime
    action: TickAction
    reason: SkipReason | None = None
    detail: str | None = None
    run_id: str | None = None
    result: RunResult | None = None
    """The finished run, when it ran in the caller's thread (fake clock)."""

    def to_dict(self) -> JSON:
        return {
            "scheduler_name": self.scheduler_name,
            "scheduled_time": self.scheduled_time.isoformat(),
            "action": self.action.value,
            "reason": self.reason.value if self.reason else None,
            "detail": self.detail,
            "run_id": self.run_id,
            "status": self.result.status.value if self.result else None,
        }

    def __repr__(self) -> str:
        why = f"({self.reason.value})" if self.reason else ""
        return f"<{self.scheduler_name} {self.scheduled_time.isoformat()} {self.action.value}{why}>"


def due_ticks(
    trigger: CronTrigger,
    cursor: datetime,
    now: datetime,
    *,
    start_date: datetime | None,
    end_date: datetime | None,
    keep: int,
) -> tuple[list[datetime], int, datetime | None]:
    """The fire times in (``cursor``, ``now``] within ``start_date`` .. ``end_date``: the most
    recent ``keep`` of them, how many older ones were dropped, and the first fire time after
    ``now`` (``None`` past ``end_date``)."""
    due: deque[datetime] = deque(maxlen=keep)
    count = 0
    start = cursor
    if start_date is not None and start < start_date:
        start = start_date - timedelta(microseconds=1)
    following: datetime | None = None
    for instant in trigger.iter_fire_times(start):
        if end_date is not None and instant > end_date:
            break
        if instant > now:
            following = instant
            break
        due.append(instant)
        count += 1
    return list(due), count - len(due), following


def plan_ticks(
    due: list[datetime],
    now: datetime,
    *,
    policy: MissedTickPolicy,
    tolerance: timedelta,
    grace: timedelta,
    max_catch_up: int,
) -> Iterator[tuple[datetime, str | None]]:
    """Each of the ``due`` ticks (oldest first, at least one) as ``(tick, None)`` to run it, or
    ``(tick, why it is skipped as missed)``, under the missed-tick ``policy``."""
    latest = due[-1]
    on_time = now - latest <= tolerance
    missed = due[:-1] if on_time else due
    run: set[datetime] = set()
    if policy is MissedTickPolicy.LATEST and missed and not on_time:
        if now - missed[-1] <= grace:
            run.add(missed[-1])
    elif policy is MissedTickPolicy.ALL:
        run.update([t for t in missed if now - t <= grace][-max_catch_up:])
    for tick in missed:
        if tick in run:
            yield tick, None
        else:
            yield tick, f"{now - tick} late, policy {policy.value!r}"
    if on_time:
        yield latest, None


def check_seconds(name: str, value: timedelta | float) -> timedelta:
    delta = value if isinstance(value, timedelta) else timedelta(seconds=float(value))
    if delta < timedelta(0):
        raise ValidationError(f"{name} must be zero or more seconds, got {value!r}")
    return delta


def check_workers(owner: str, value: Any) -> int:
    # Checked here: a pool that cannot be made would fail at the first run, its tick claimed.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(
            f"{owner} max_workers must be a whole number >= 1 (threads for pipelines), "
            f"got {value!r}"
        )
    return value


def check_policy(enum: type[Any], name: str, value: Any) -> Any:
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in enum)
        raise ValidationError(f"{name} {value!r} is not one of {choices}") from None
