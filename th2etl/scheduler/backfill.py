"""Backfill: run a stored scheduler's past ticks, each for its own logical time.

``th2etl backfill SCHEDULER --from ISO --to ISO``, ``POST /schedulers/{name}/backfill`` and
:func:`plan_backfill` + :class:`Backfill` in Python. Semantics, in one place:

* **Fire times.** Every fire time ``t`` of the scheduler's trigger with ``start <= t <= end``,
  under the trigger's DST policy (:mod:`th2etl.scheduler.triggers`: a fixed-time job runs once
  a day, also on the days the clocks change), and within the scheduler's ``start_date`` ..
  ``end_date``. A bound typed without an offset (``--from 2026-03-01``) is read in the
  trigger's time zone. Each run is for its tick: ``${run:interval_start}`` is the previous
  fire time, ``${run:interval_end}`` the tick's (:mod:`th2etl.logical_time`).
* **Refused, with the count, before anything runs:** a range that ends before it starts, a
  range that ends in the future, more than :data:`MAX_FIRE_TIMES` fire times unless
  ``yes``, and a scheduler fired by ``after_pipelines`` (it has no fire times of its own:
  backfill its upstream pipelines' schedulers, and it follows them).
* **Exactly once.** Each fire time is claimed through the scheduler's own claims
  (:meth:`~th2etl.storage.coordination.Coordination.claim_tick`, keyed by scheduler, time and
  attempt), so a tick that ran or runs is not run again, by this backfill, another one started
  at the same moment in another process, or the scheduler itself. A tick recorded ``skipped``
  (missed, overlap, max_active_runs) counts as not run: backfill exists for those. With
  ``rerun_failed``, ticks whose latest attempt ``failed``, was ``abandoned`` or was
  ``cancelled`` (an interrupted backfill cancels its runs going) run again as their next
  attempt; the earlier attempt's record stays.
* **Runs.** Recorded like the scheduler's (scheduler, trigger, logical time, attempt, the
  schedule's variables and timeout, ``started_by`` ``backfill:NAME``, the definitions
  snapshot taken when the backfill starts, and the executor), in fire-time order, at most
  ``max_active`` at once. They execute on an :class:`~th2etl.executors.Executor`, as
  scheduled runs do: ``th2etl backfill`` uses the one ``TH2ETL_EXECUTOR`` names (worker
  processes by default, like the scheduler), the API its service's, :class:`Backfill` in
  Python a thread of this process unless given one. So a backfill run is isolated and
  killable like a scheduled one: a cancel (``th2etl cancel``, the API) or the schedule's
  timeout stops it, a worker that crashes fails only its run. They are owned by this process,
  which sends heartbeats meanwhile: a backfill killed midway leaves its runs to be marked
  ``abandoned`` by any live instance (a worker whose owner died cancels its run itself), and
  ``--rerun-failed`` picks them up. With ``logs_dir`` (default: the ``pipelines_logs_dir``
  setting), each run gets its folder as a scheduled run does:
  ``<logs_dir>/<scheduler>/<YYYYmmdd_HHMMSS>`` of its fire time (``_2``... for a later
  attempt), as ``RunContext.output_dir``, with the run's ``run.log``.
* A **disabled** scheduler can be backfilled (the plan says so); its trigger stays quiet.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from th2etl.clock import Clock, SystemClock
from th2etl.exceptions import StorageError, ValidationError
from th2etl.executors import Executor, RunJob, RunSlot, ThreadExecutor
from th2etl.logical_time import LogicalTime
from th2etl.pipelines.result import RunResult, RunStatus
from th2etl.scheduler._runs import FROM_SETTINGS, default_logs_dir, make_run_dir, with_timeout
from th2etl.scheduler.manager import default_instance_id
from th2etl.scheduler.options import ScheduleOptions
from th2etl.scheduler.triggers import CronTrigger

if TYPE_CHECKING:
    from th2etl.pipelines.pipeline import Pipeline
    from th2etl.storage.base import Storage
    from th2etl.storage.records import RunRecord, SchedulerRecord

__all__ = [
    "MAX_FIRE_TIMES",
    "Backfill",
    "BackfillPlan",
    "BackfillReport",
    "BackfillTick",
    "plan_backfill",
]

logger = logging.getLogger(__name__)

MAX_FIRE_TIMES = 10_000
"""A larger backfill needs ``yes`` (``--yes``): it is more likely a typo than a plan."""
MAX_ACTIVE = 1_000
_COUNT_LIMIT = 1_000_000
RERUN_FAILED = frozenset({RunStatus.FAILED, RunStatus.ABANDONED, RunStatus.CANCELLED})
"""The ticks ``rerun_failed`` runs again (besides ``skipped`` ones, which always run)."""
_EPSILON = timedelta(microseconds=1)


@dataclass(frozen=True)
class BackfillPlan:
    """What a backfill would do: its fire times, which of them run, and notes."""

    scheduler: SchedulerRecord
    trigger: CronTrigger
    start: datetime
    end: datetime
    fire_times: tuple[datetime, ...]
    to_run: tuple[datetime, ...]
    previous: dict[datetime, RunRecord]
    """The latest recorded attempt of the fire times that have one."""
    rerun_failed: bool
    notes: tuple[str, ...] = ()

    def state(self, fire_time: datetime) -> str:
        """What happens to ``fire_time``: ``run``, ``rerun (failed, attempt 2)``, ``already
        succeeded (run ...)``..."""
        record = self.previous.get(fire_time)
        if fire_time in self.to_run:
            if record is None:
                return "run"
            return f"rerun ({record.status.value}, attempt {record.attempt + 1})"
        assert record is not None
        return f"already {record.status.value} (run {record.run_id})"

    def summary(self) -> str:
        record = self.scheduler
        kept = Counter(
            self.previous[t].status.value for t in self.fire_times if t not in self.to_run
        )
        already = ", ".join(f"{count} {status}" for status, count in sorted(kept.items()))
        total = len(self.fire_times)
        first_last = (
            f" from {self.fire_times[0].isoformat()} to {self.fire_times[-1].isoformat()}"
            if total
            else f" between {self.start.isoformat()} and {self.end.isoformat()}"
        )
        return (
            f"backfill of scheduler {record.name!r} (pipeline {record.pipeline_name!r}, "
            f"trigger {record.trigger_name!r}: {self.trigger.expression!r} in "
            f"{self.trigger.timezone_name}): {total} fire time{'' if total == 1 else 's'}"
            f"{first_last}; {len(self.to_run)} to run"
            + (f", already: {already}" if already else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheduler": self.scheduler.name,
            "pipeline": self.scheduler.pipeline_name,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "fire_times": len(self.fire_times),
            "to_run": len(self.to_run),
            "rerun_failed": self.rerun_failed,
            "enabled": self.scheduler.enabled,
            "notes": list(self.notes),
            "summary": self.summary(),
            "ticks": [
                {"scheduled_time": t.isoformat(), "state": self.state(t)} for t in self.fire_times
            ],
        }


def plan_backfill(
    storage: Storage,
    scheduler_name: str,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    rerun_failed: bool = False,
    yes: bool = False,
) -> BackfillPlan:
    """The fire times of ``scheduler_name`` in ``start`` .. ``end`` and what a backfill does
    with each (see the module docstring); raises :class:`ValidationError` for a range it
    refuses, NotFoundError for an unknown scheduler."""
    record = storage.get_scheduler(scheduler_name)
    who = f"backfill of scheduler {scheduler_name!r}"
    if record.trigger_name is None:
        raise ValidationError(
            f"{who}: it runs after pipeline(s) {', '.join(record.after_pipelines)} succeed, so "
            "it has no fire times of its own; backfill the schedulers of those pipelines, and "
            "it follows each of their runs"
        )
    stored = storage.get_trigger(record.trigger_name)
    trigger = CronTrigger(stored.cron_expression, stored.timezone)
    for bound, value in (("from", start), ("to", end)):
        if value.utcoffset() is None:
            raise ValidationError(f"{who}: --{bound} {value!r} has no time zone")
    if start > end:
        raise ValidationError(
            f"{who}: the range is reversed: --from {start.isoformat()} is after --to "
            f"{end.isoformat()}; swap them"
        )
    notes: list[str] = []
    if not record.enabled:
        notes.append(
            f"scheduler {scheduler_name!r} is disabled: the backfill runs its ticks anyway, "
            "and its trigger stays quiet"
        )
    if end > now:
        ahead = _count(trigger, max(start, now), end, record.options)
        raise ValidationError(
            f"{who}: --to {end.isoformat()} is in the future (now {now.isoformat()}): "
            f"{ahead}{'+' if ahead >= _COUNT_LIMIT else ''} fire time(s) would run before "
            "their time; end the range at now or earlier"
        )
    fire_times = list(_fire_times(trigger, start, end, record.options, MAX_FIRE_TIMES + 1))
    if len(fire_times) > MAX_FIRE_TIMES and not yes:
        total = _count(trigger, start, end, record.options)
        raise ValidationError(
            f"{who}: {total}{'+' if total >= _COUNT_LIMIT else ''} fire times between "
            f"{start.isoformat()} and {end.isoformat()}, more than {MAX_FIRE_TIMES:,}; "
            "narrow the range, or confirm with --yes (yes: true in the API)"
        )
    if len(fire_times) > MAX_FIRE_TIMES:
        fire_times = list(_fire_times(trigger, start, end, record.options, None))
    clipped = [
        f"{name} {value.isoformat()}"
        for name, value, outside in (
            ("start_date", record.start_date, record.start_date and start < record.start_date),
            ("end_date", record.end_date, record.end_date and end > record.end_date),
        )
        if outside and value is not None
    ]
    if clipped:
        notes.append(f"only fire times within the scheduler's {' and '.join(clipped)} count")
    previous = storage.tick_records(scheduler_name, start, end) if fire_times else {}
    rerun = {RunStatus.SKIPPED, *(RERUN_FAILED if rerun_failed else ())}
    to_run = tuple(t for t in fire_times if t not in previous or previous[t].status in rerun)
    return BackfillPlan(
        record,
        trigger,
        start,
        end,
        tuple(fire_times),
        to_run,
        previous,
        rerun_failed,
        tuple(notes),
    )


def _fire_times(
    trigger: CronTrigger,
    start: datetime,
    end: datetime,
    options: ScheduleOptions,
    limit: int | None,
) -> Iterator[datetime]:
    count = 0
    for instant in trigger.iter_fire_times(start - _EPSILON):
        if instant > end or (limit is not None and count >= limit):
            return
        if options.in_range(instant):
            count += 1
            yield instant


def _count(trigger: CronTrigger, start: datetime, end: datetime, options: ScheduleOptions) -> int:
    return sum(1 for _ in _fire_times(trigger, start, end, options, _COUNT_LIMIT))


@dataclass
class BackfillReport:
    """How a backfill went; ``done`` counts runs that ended and ticks taken elsewhere."""

    total: int
    done: int = 0
    succeeded: int = 0
    failed: list[tuple[datetime, str, str]] = field(default_factory=list)
    """(fire time, run id, error) of the runs that did not succeed."""
    taken: int = 0
    """Ticks another process claimed first (they ran there)."""
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "done": self.done,
            "succeeded": self.succeeded,
            "failed": [
                {"scheduled_time": t.isoformat(), "run_id": run_id, "error": error}
                for t, run_id, error in self.failed
            ],
            "taken_elsewhere": self.taken,
            "cancelled": self.cancelled,
        }


@dataclass(frozen=True)
class BackfillTick:
    """One tick of a backfill that is done: its run's outcome, or taken elsewhere."""

    scheduled_time: datetime
    run_id: str | None
    """``None``: another process claimed the tick first (it runs there)."""
    status: RunStatus | None
    error: str | None = None


Progress = Callable[[BackfillReport, BackfillTick], None]
"""Called after each tick is done, with the report so far."""


class Backfill:
    """Runs a :class:`BackfillPlan` (see the module docstring): ``Backfill(storage,
    plan).run()``. ``executor`` is where the runs execute (default: threads of this process;
    the caller shuts down an executor it passes). ``cancel()`` (from any thread) stops
    claiming and cancels the runs going."""

    def __init__(
        self,
        storage: Storage,
        plan: BackfillPlan,
        *,
        max_active: int = 1,
        clock: Clock | None = None,
        instance_id: str | None = None,
        heartbeat_interval: float = 10.0,
        executor: Executor | None = None,
        logs_dir: str | Path | None = FROM_SETTINGS,
    ) -> None:
        if isinstance(max_active, bool) or not isinstance(max_active, int):
            max_active = 0
        if not 1 <= max_active <= MAX_ACTIVE:
            raise ValidationError(
                f"backfill of scheduler {plan.scheduler.name!r}: max_active must be a whole "
                f"number from 1 to {MAX_ACTIVE}, got {max_active!r}"
            )
        self.storage = storage
        self.plan = plan
        self.max_active = max_active
        self.clock: Clock = clock or SystemClock()
        self.instance_id = instance_id or default_instance_id()
        self.heartbeat_interval = heartbeat_interval
        logs_dir = default_logs_dir() if logs_dir is FROM_SETTINGS else logs_dir
        self.logs_dir = None if logs_dir is None else Path(logs_dir)
        self.executor: Executor = executor or ThreadExecutor(storage, clock=self.clock)
        self.report = BackfillReport(len(plan.to_run))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._slots: dict[str, RunSlot] = {}
        self._next_heartbeat = 0.0
        self._snapshot: dict[str, Any] = {}
        defaults = storage.get_schedule_defaults()
        self.options = plan.scheduler.options.effective(defaults)

    def cancel(self) -> None:
        """Claim no more ticks and cancel the runs going (they end ``cancelled``)."""
        self._stop.set()
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            slot.cancel()

    def run(self, on_progress: Progress | None = None) -> BackfillReport:
        """Claim and run the plan's ticks in order, ``max_active`` at once; return the report.
        Raises :class:`~th2etl.exceptions.ExecutorError`, before any tick is claimed, when
        the pipeline cannot execute on the executor."""
        from th2etl.storage.recorder import pipeline_from_snapshot

        # One snapshot for the whole backfill: every run executes (and records) the same
        # definitions, whatever is edited meanwhile.
        self._snapshot = self.storage.definition_snapshot(self.plan.scheduler.pipeline_name)
        pipeline = with_timeout(pipeline_from_snapshot(self._snapshot), self.options.timeout)
        self.executor.check(pipeline)
        intervals = self._intervals()
        self._heartbeat()
        pending: dict[Future[RunResult], tuple[datetime, str]] = {}
        # Each pool thread hands one run to the executor and waits for its end.
        with ThreadPoolExecutor(self.max_active, thread_name_prefix="th2etl-backfill") as pool:
            try:
                for fire_time in self.plan.to_run:
                    while len(pending) >= self.max_active and not self._stop.is_set():
                        self._collect(pending, on_progress)
                    if self._stop.is_set():
                        break
                    claimed = self._claim(fire_time, intervals[fire_time])
                    if claimed is None:
                        self.report.taken += 1
                        self.report.done += 1
                        if on_progress is not None:
                            on_progress(self.report, BackfillTick(fire_time, None, None))
                        continue
                    slot = RunSlot(claimed.run_id)
                    with self._lock:
                        self._slots[claimed.run_id] = slot
                    if self._stop.is_set():
                        slot.cancel()
                    future = pool.submit(
                        self._execute, pipeline, claimed, slot, intervals[fire_time]
                    )
                    pending[future] = (fire_time, claimed.run_id)
                while pending:
                    self._collect(pending, on_progress)
            except BaseException:
                self.cancel()
                raise
            finally:
                self._finish()
        self.report.cancelled = self._stop.is_set()
        return self.report

    def _intervals(self) -> dict[datetime, LogicalTime]:
        fire_times = self.plan.to_run
        if not fire_times:
            return {}
        trigger = self.plan.trigger
        result = {}
        every = self.plan.fire_times
        index = {t: i for i, t in enumerate(every)}
        for t in fire_times:
            i = index[t]
            result[t] = trigger.logical_time(t, every[i - 1] if i else None)
        return result

    def _claim(self, fire_time: datetime, logical_time: LogicalTime) -> RunRecord | None:
        rerun = {RunStatus.SKIPPED, *(RERUN_FAILED if self.plan.rerun_failed else ())}
        record = self.plan.scheduler
        return self.storage.claim_tick(
            record.name,
            fire_time,
            pipeline_name=record.pipeline_name,
            trigger_name=record.trigger_name,
            instance_id=self.instance_id,
            now=self.clock.now(),
            rerun=rerun,
            variables=self.options.variables,
            logical_time=logical_time,
            started_by=f"backfill:{record.name}",
            definition=self._snapshot,
            executor=self.executor.kind,
        )

    def _execute(
        self, pipeline: Pipeline, claimed: RunRecord, slot: RunSlot, logical_time: LogicalTime
    ) -> RunResult:
        """Hand the run to the executor and wait for its end (in a pool thread)."""
        record = self.plan.scheduler
        try:
            run_dir = None
            if self.logs_dir is not None and claimed.scheduled_time is not None:
                run_dir = make_run_dir(self.logs_dir, record.name, claimed.scheduled_time)
            job = RunJob(
                claimed.run_id,
                pipeline,
                variables=self.options.variables,
                scheduler_name=record.name,
                trigger_name=record.trigger_name,
                scheduled_time=claimed.scheduled_time,
                instance_id=self.instance_id,
                logical_time=logical_time,
                output_dir=run_dir,
                log_file=None if run_dir is None else run_dir / "run.log",
            )
            handle = self.executor.submit(job)
            slot.attach(handle)
            result = handle.wait()
            assert result is not None
            if not handle.recorded:  # the database was away when the run ended
                self._record_end(result.run_id, result.status, result.error)
            return result
        finally:
            with self._lock:
                self._slots.pop(claimed.run_id, None)

    def _collect(
        self,
        pending: dict[Future[RunResult], tuple[datetime, str]],
        on_progress: Progress | None,
    ) -> None:
        """Wait for a run to end and count the ended ones; send a heartbeat (and pass on the
        cancels requested) every ``heartbeat_interval``, however often runs end."""
        left = self._next_heartbeat - time.monotonic()
        done, _ = wait(pending, timeout=max(left, 0), return_when=FIRST_COMPLETED)
        if time.monotonic() >= self._next_heartbeat:
            self._heartbeat()
        for future in sorted(done, key=lambda f: pending[f][0]):
            fire_time, run_id = pending.pop(future)
            error = future.exception()
            result = None if error is not None else future.result()
            report = self.report
            report.done += 1
            if result is None:  # the executor refused the job, or a programming error
                reason = f"the run could not start: {type(error).__name__}: {error}"
                self._record_end(run_id, RunStatus.FAILED, reason)
                tick = BackfillTick(fire_time, run_id, RunStatus.FAILED, reason)
            else:
                tick = BackfillTick(fire_time, run_id, result.status, result.error)
            if tick.status is RunStatus.SUCCEEDED:
                report.succeeded += 1
            else:
                report.failed.append((fire_time, run_id, tick.error or str(tick.status)))
            if on_progress is not None:
                on_progress(report, tick)

    def _record_end(self, run_id: str, status: RunStatus, error: str | None) -> None:
        try:
            self.storage.finish_run(run_id, status, finished_at=self.clock.now(), error=error)
        except StorageError as exc:
            logger.warning(
                "backfill: cannot record that run %s %s: %s (it is marked abandoned once "
                "this process stops sending heartbeats)",
                run_id,
                status.value,
                exc,
            )

    def _heartbeat(self) -> None:
        self._next_heartbeat = time.monotonic() + self.heartbeat_interval
        try:
            self.storage.heartbeat(
                self.instance_id,
                # The database's clock stamps it (liveness has one clock), unless this backfill
                # runs on a fake clock, which then drives everything.
                None if isinstance(self.clock, SystemClock) else self.clock.now(),
                hostname=socket.gethostname(),
                pid=os.getpid(),
                info={"role": "backfill", "scheduler": self.plan.scheduler.name},
                # Others judge this process by the lease it stores: 1.5 of its own periods.
                lease=timedelta(seconds=1.5 * self.heartbeat_interval),
            )
            with self._lock:
                going = list(self._slots.items())
            for run_id, slot in going:
                if self.storage.cancel_requested(run_id):
                    slot.cancel()
        except StorageError as exc:
            logger.warning("backfill: the database is unavailable (%s)", exc)

    def _finish(self) -> None:
        try:
            self.storage.remove_instance(self.instance_id)
        except StorageError as exc:
            logger.warning("backfill: cannot remove instance %s: %s", self.instance_id, exc)
