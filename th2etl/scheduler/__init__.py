"""The scheduler: cron triggers with a stated DST policy, schedulers, and the database-driven
manager that runs every tick exactly once across processes.

>>> from th2etl.pipelines import build_example_pipeline
>>> from th2etl.scheduler import CronScheduler, CronTrigger
>>> scheduler = CronScheduler(build_example_pipeline(), CronTrigger("*/5 * * * *"))
>>> scheduler.start()  # doctest: +SKIP
"""

from __future__ import annotations

from th2etl.clock import FakeClock
from th2etl.scheduler.manager import SchedulerManager, load_scheduler_manager
from th2etl.scheduler.scheduler import (
    CronScheduler,
    MissedTickPolicy,
    OverlapPolicy,
    SkipReason,
    TickAction,
    TickResult,
    schedule_pipeline,
)
from th2etl.scheduler.triggers import CronTrigger

__all__ = [
    "CronScheduler",
    "CronTrigger",
    "FakeClock",
    "MissedTickPolicy",
    "OverlapPolicy",
    "SchedulerManager",
    "SkipReason",
    "TickAction",
    "TickResult",
    "load_scheduler_manager",
    "schedule_pipeline",
]
