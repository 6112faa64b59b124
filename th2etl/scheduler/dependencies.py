"""DependentScheduler: runs a pipeline when other pipelines succeeded for the same logical time.

A stored scheduler with ``after_pipelines`` (instead of a trigger) is loaded by
:func:`~th2etl.scheduler.load_scheduler_manager` as a :class:`DependentScheduler`. Semantics,
in one place:

* **When.** Every ``poll`` (a cron, by default every minute) it reads the successes of its
  upstream pipelines that finished since it last looked (with a minute of overlap, so a success
  recorded late by a slow clock is not lost). A scheduled time ``T`` is *ready* when every
  upstream pipeline has a ``succeeded`` run for ``T`` -- whichever scheduler ran it: its own
  trigger, a backfill, or a dependency. On its first look it goes back to when the scheduler
  was stored (or enabled), at most ``lookback`` (default one day).
* **What.** One run of its pipeline for ``T``, with the logical time of the first upstream
  pipeline's run for ``T`` (its ``${run:interval_start}`` .. ``${run:interval_end}``): a daily
  load of orders followed by a daily report covers the same day. ``started_by`` names it a
  dependency run.
* **Exactly once.** ``T`` is claimed like a backfill's tick (scheduler, time, attempt), so of
  several instances one runs it, and a poll that sees ``T`` again does nothing. A ``T`` recorded
  ``skipped`` (overlap, max_active_runs) runs again when an upstream succeeds for it again
  (a rerun or backfill upstream).
* Its options (variables, overlap, max_active_runs, timeout, dates) apply as for a cron
  scheduler; ``missed`` does not (nothing is missed: successes are found when it looks).
* A cycle of dependencies is refused when stored (:mod:`th2etl.storage.definition_store`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from th2etl.exceptions import StorageError
from th2etl.logical_time import LogicalTime
from th2etl.pipelines.pipeline import Pipeline
from th2etl.scheduler.policies import TickAction, TickResult
from th2etl.scheduler.scheduler import CronScheduler
from th2etl.scheduler.triggers import CronTrigger

if TYPE_CHECKING:
    from th2etl.storage.records import RunRecord

__all__ = ["DependentScheduler"]

logger = logging.getLogger(__name__)

_OVERLAP = timedelta(minutes=1)


class DependentScheduler(CronScheduler):
    """Runs ``pipeline`` once per logical time for which every pipeline in
    ``after_pipelines`` succeeded (see the module docstring); needs a storage, so it is
    made by the database-driven manager."""

    def __init__(
        self,
        pipeline: Pipeline | Callable[[], Pipeline],
        after_pipelines: Sequence[str],
        name: str | None = None,
        *,
        poll: CronTrigger | str = "* * * * *",
        lookback: timedelta = timedelta(days=1),
        **options: Any,
    ) -> None:
        super().__init__(pipeline, poll, name, **options)
        self.after_pipelines = list(after_pipelines)
        self.lookback = lookback
        self._since: datetime | None = None
        self._ready: dict[datetime, LogicalTime] = {}
        self._seen: dict[datetime, datetime] = {}
        """Scheduled times handled recently (when): a later poll does not report them again."""

    def logical_time(self, scheduled: datetime) -> LogicalTime:
        return self._ready.get(scheduled) or LogicalTime.at(scheduled)

    def tick(self, now: datetime) -> list[TickResult]:
        """Look for ready scheduled times when a poll is due, and run each once."""
        if self._cursor is None:
            self.prime(now)
        if self._next is None or now < self._next:
            return []
        self.retry_lost_finishes()
        assert self.storage is not None
        since = self._since
        if since is None:
            since = max(now - self.lookback, self.not_before or now - self.lookback)
        results: list[TickResult] = []
        try:
            self._ready = self._find_ready(since)
            for scheduled, logical_time in sorted(self._ready.items()):
                if not self.options_allow(scheduled):
                    continue
                result = self._fire(scheduled, now)
                self._seen[scheduled] = now
                if result.action is not TickAction.TAKEN:
                    results.append(result)
                logger.info(
                    "scheduler %r: %s after %s for %s",
                    self.name,
                    result.action.value,
                    ", ".join(self.after_pipelines),
                    logical_time.scheduled_time.isoformat(),
                )
        except StorageError as exc:
            logger.warning("scheduler %r: the database is unavailable (%s)", self.name, exc)
            self._next = now + timedelta(seconds=5)
            return results
        finally:
            self._ready = {}
        self._since = now - _OVERLAP
        self._seen = {t: at for t, at in self._seen.items() if at >= now - 2 * _OVERLAP}
        self._cursor = now
        self._next = self.trigger.next_fire_time(now)
        return results

    def options_allow(self, scheduled: datetime) -> bool:
        """Whether ``scheduled`` is within the dates and not handled by a recent poll."""
        if scheduled in self._seen:
            return False
        if self.start_date is not None and scheduled < self.start_date:
            return False
        return self.end_date is None or scheduled <= self.end_date

    def _find_ready(self, since: datetime) -> dict[datetime, LogicalTime]:
        """Scheduled times with a success of every upstream pipeline, and their logical time
        (from the first upstream pipeline's run)."""
        assert self.storage is not None
        found: dict[datetime, dict[str, RunRecord]] = {}
        for run in self.storage.succeeded_ticks(self.after_pipelines, finished_since=since):
            assert run.scheduled_time is not None
            found.setdefault(run.scheduled_time, {})[run.pipeline_name] = run
        ready: dict[datetime, LogicalTime] = {}
        for scheduled, runs in found.items():
            if len(runs) < len(self.after_pipelines):
                runs = {**self.storage.succeeded_at(self.after_pipelines, scheduled), **runs}
            if all(name in runs for name in self.after_pipelines):
                first = runs[self.after_pipelines[0]]
                ready[scheduled] = first.logical_time or LogicalTime.at(scheduled)
        return ready

    def _claim(self, scheduled: datetime, now: datetime) -> RunRecord | None:
        assert self.storage is not None
        # A new attempt of a skipped time may be taken: claim_tick makes the run's id (the
        # entry only keeps the caller's bookkeeping alike; a lost answer is swept as abandoned).
        self._claims.setdefault(scheduled, "")
        return self.storage.claim_tick(
            self.name,
            scheduled,
            pipeline_name=self.pipeline_name,
            trigger_name=None,
            instance_id=self.instance_id,
            now=now,
            variables=self.variables,
            logical_time=self.logical_time(scheduled),
            started_by=f"dependency:{','.join(self.after_pipelines)}",
            executor=self.executor_kind,
        )

    def __repr__(self) -> str:
        return (
            f"DependentScheduler(name={self.name!r}, pipeline={self.pipeline_name!r}, "
            f"after={self.after_pipelines!r})"
        )
