"""The scheduler: cron triggers, schedulers, and the database-driven manager."""

from __future__ import annotations

from th2etl.scheduler.triggers import CronTrigger

__all__ = ["CronTrigger"]
