"""Time as an input: the scheduler and the engine ask a clock, never ``datetime.now()``.

``SystemClock`` is the real one. ``FakeClock`` (in :mod:`th2etl.scheduler`) lets tests drive time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "utcnow"]


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
