"""Time as an input: the scheduler and the engine ask a clock, never ``datetime.now()``.

``SystemClock`` is the real one. ``FakeClock`` lets tests (yours too) drive time: a scheduler
started on a fake clock does not block; ``clock.advance(...)`` moves time and runs, in this
thread and in order, everything that became due.

>>> from datetime import timedelta
>>> clock = FakeClock()
>>> clock.advance(timedelta(minutes=5))
[]
>>> clock.now().isoformat()
'2026-01-01T00:05:00+00:00'
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from th2etl.exceptions import ValidationError

__all__ = ["Clock", "FakeClock", "SystemClock", "Ticking", "utcnow"]


@runtime_checkable
class Clock(Protocol):
    """Where th2etl reads the time and waits."""

    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake clock may advance instead)."""
        ...


class SystemClock:
    """The machine's clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


def utcnow() -> datetime:
    """The current instant in UTC (for timestamps of records, not for scheduling decisions)."""
    return datetime.now(UTC)


@runtime_checkable
class Ticking(Protocol):
    """What a :class:`FakeClock` drives: schedulers and managers implement it."""

    def next_due_time(self) -> datetime | None:
        """The next instant something is due, or ``None`` when nothing is scheduled."""
        ...

    def tick(self, now: datetime) -> list[Any]:
        """Do what is due at ``now``; return what was done."""
        ...


DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told to, for tests and simulations.

    ``now()`` is an aware UTC datetime (``start``, default 2026-01-01 00:00 UTC).
    ``advance(delta)`` or ``advance(until=...)`` moves time forward; on the way it stops at every
    instant something attached to it is due and calls its ``tick(now)`` (attached objects are
    ticked in the order they were attached), then returns everything the ticks returned.
    ``sleep(seconds)`` is ``advance(seconds)``. A scheduler or manager started on a fake clock
    attaches itself and returns at once, and runs its pipelines in the caller's thread, so
    what a test sees after ``advance`` is final.

    Calling ``advance`` from inside a tick (a bloc that "sleeps") only moves the time; the
    outer ``advance`` then handles what became due, in order.
    """

    runs_inline = True
    """Tells schedulers to run pipelines synchronously, so tests are deterministic."""

    def __init__(self, start: datetime | None = None) -> None:
        start = DEFAULT_START if start is None else start
        if not isinstance(start, datetime) or start.utcoffset() is None:
            raise ValidationError(
                f"FakeClock start must be a timezone-aware datetime, e.g. "
                f"datetime(2026, 1, 1, tzinfo=UTC); got {start!r}"
            )
        self._now = start.astimezone(UTC)
        self._attached: list[Ticking] = []
        self._lock = threading.RLock()
        self._advancing = False

    def now(self) -> datetime:
        return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(timedelta(seconds=seconds))

    def attach(self, ticking: Ticking) -> None:
        """Drive ``ticking`` (its ``tick`` runs when its ``next_due_time`` comes); idempotent."""
        with self._lock:
            if not any(t is ticking for t in self._attached):
                self._attached.append(ticking)

    def detach(self, ticking: Ticking) -> None:
        """Stop driving ``ticking``; unknown objects are ignored."""
        with self._lock:
            self._attached = [t for t in self._attached if t is not ticking]

    @property
    def attached(self) -> list[Ticking]:
        return list(self._attached)

    def advance(
        self, delta: timedelta | float | None = None, *, until: datetime | None = None
    ) -> list[Any]:
        """Move time by ``delta`` (a timedelta or seconds) or to ``until``, running every tick
        that falls due on the way, in order; return what the ticks returned."""
        target = self._target(delta, until)
        with self._lock:
            if self._advancing:  # called from inside a tick: only move the time
                self._now = max(self._now, target)
                return []
            self._advancing = True
            try:
                return self._run_until(target)
            finally:
                self._advancing = False

    def _target(self, delta: timedelta | float | None, until: datetime | None) -> datetime:
        if (delta is None) == (until is None):
            raise ValidationError(
                "FakeClock.advance needs exactly one of delta (a timedelta or seconds) or "
                f"until (an aware datetime); got delta={delta!r}, until={until!r}"
            )
        if until is not None:
            if not isinstance(until, datetime) or until.utcoffset() is None:
                raise ValidationError(
                    f"FakeClock.advance(until=...) needs a timezone-aware datetime, got {until!r}"
                )
            target = until.astimezone(UTC)
        else:
            step = delta if isinstance(delta, timedelta) else timedelta(seconds=float(delta or 0))
            target = self._now + step
        if target < self._now:
            raise ValidationError(
                f"FakeClock cannot go back in time: it is {self._now.isoformat()} and "
                f"{target.isoformat()} was asked; create a new FakeClock to start over"
            )
        return target

    def _run_until(self, target: datetime) -> list[Any]:
        results: list[Any] = []
        ticked_at: datetime | None = None
        while True:
            dues = [d for d in (t.next_due_time() for t in self._attached) if d is not None]
            # Something still due at an instant already ticked (e.g. it is waiting for a
            # database) is retried at the next instant the clock stops at, not in a loop.
            later = [d for d in dues if d > self._now or ticked_at != self._now]
            step = min(later, default=None)
            if step is None or step > target:
                break
            self._now = max(self._now, step.astimezone(UTC))
            ticked_at = self._now
            for ticking in list(self._attached):
                results.extend(ticking.tick(self._now))
        self._now = max(self._now, target)
        return results

    def __repr__(self) -> str:
        return f"FakeClock({self._now.isoformat()})"
