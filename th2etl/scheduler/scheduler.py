"""CronScheduler: runs one pipeline whenever its trigger fires, with stated policies.

One step, then a thin loop: :meth:`CronScheduler.tick` fires what is due at ``now`` and returns
a :class:`TickResult` per scheduled time it handled; :meth:`CronScheduler.start` blocks,
sleeping until the next due time, until :meth:`~CronScheduler.stop`, SIGINT or SIGTERM; the
pipelines run on a thread pool, so a slow run never delays another tick. On a
:class:`~th2etl.clock.FakeClock`, ``start()`` attaches the scheduler to the clock and returns;
``clock.advance(...)`` then drives it, running each pipeline in the caller's thread (the blocs
of a stage one after another, bloc timeouts not enforced), so tests are deterministic.

Policies (enums, per scheduler):

* :class:`MissedTickPolicy` -- a tick is *missed* when it is handled more than ``tolerance``
  (default 60 s) after its time, or when a later tick is also already due (the scheduler, or
  every instance of it, was down, or the database was unreachable). ``SKIP`` runs none of
  them; ``LATEST`` (default) runs the most recent one if it is at most ``grace`` (default one
  hour) late and no on-time tick is due; ``ALL`` runs every missed tick at most ``grace`` late,
  oldest first, the most recent ``max_catch_up`` of them (default 10). Every missed tick that
  does not run is recorded ``skipped`` with reason ``missed`` (when a storage is attached).
* :class:`OverlapPolicy` -- ``SKIP`` (default): a tick due while the scheduler's previous run
  (in any instance, when a storage is attached) is still going is recorded ``skipped`` with
  reason ``overlap``; ``ALLOW`` starts it anyway.
* ``max_active_runs``, ``start_date`` / ``end_date``, ``timeout`` and ``variables``: see
  :mod:`th2etl.scheduler.options` (a stored scheduler's options, applied through
  :meth:`CronScheduler.configure`).
* Each run is for its tick: its logical time and data interval (``${run:...}``) come from
  :meth:`CronTrigger.logical_time <th2etl.scheduler.triggers.CronTrigger.logical_time>`.

Output folders: when ``logs_dir`` (default: the ``pipelines_logs_dir`` / ``PIPELINES_LOGS_DIR``
setting) is set, each run gets ``<logs_dir>/<scheduler>/<YYYYmmdd_HHMMSS>`` (the scheduled time
in UTC; ``_2``, ``_3``... when taken), passed to the blocs as ``RunContext.output_dir``; the
run's log goes to ``run.log`` and its result (``RunResult.to_dict()``) to ``result.json`` there.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from th2etl import executors
from th2etl._names import check_name
from th2etl.clock import Clock, SystemClock
from th2etl.exceptions import StorageError, ValidationError
from th2etl.executors.thread import ThreadExecutor
from th2etl.logical_time import LogicalTime
from th2etl.pipelines.pipeline import Pipeline
from th2etl.pipelines.result import RunResult, RunStatus
from th2etl.scheduler._loop import Loop, backoff
from th2etl.scheduler._runs import (
    FROM_SETTINGS,
    Going,
    ScheduledRuns,
    default_logs_dir,
    make_run_dir,
    with_timeout,
)
from th2etl.scheduler.options import ScheduleOptions, check_options
from th2etl.scheduler.policies import (
    MissedTickPolicy,
    OverlapPolicy,
    SkipReason,
    TickAction,
    TickResult,
    check_policy,
    check_seconds,
    check_workers,
    due_ticks,
    plan_ticks,
)
from th2etl.scheduler.triggers import CronTrigger

if TYPE_CHECKING:
    from th2etl.storage.coordination import Coordination
    from th2etl.storage.owner import RunOwner
    from th2etl.storage.records import RunRecord

__all__ = [
    "CronScheduler",
    "MissedTickPolicy",
    "OverlapPolicy",
    "SkipReason",
    "TickAction",
    "TickResult",
    "default_logs_dir",
    "schedule_pipeline",
]

logger = logging.getLogger(__name__)

RECORDED_MISSED_LIMIT = 100
"""At most this many missed ticks are recorded per catch-up; older ones are only counted."""


# -- the scheduler -------------------------------------------------------------------------------


class CronScheduler(Loop):
    """Runs ``pipeline`` whenever ``trigger`` fires.

    ``pipeline`` is a :class:`~th2etl.pipelines.Pipeline` (or a callable building one per run,
    with ``pipeline_name``); ``trigger`` a :class:`CronTrigger` or a cron expression (read in
    UTC). ``name`` defaults to the pipeline's name. Policies and output folders: see the module
    docstring. Pipelines run on a thread pool (``max_workers``), so a slow run never delays the
    next tick; on a clock with ``runs_inline`` (:class:`~th2etl.clock.FakeClock`) they run in
    the caller's thread unless ``inline=False``.

    >>> from th2etl.clock import FakeClock
    >>> from th2etl.pipelines import build_example_pipeline
    >>> clock = FakeClock()
    >>> scheduler = CronScheduler(build_example_pipeline(), CronTrigger("0 * * * *"), clock=clock)
    >>> scheduler.start()  # doctest: +SKIP
    >>> len(clock.advance(timedelta(days=1)))  # doctest: +SKIP
    24
    """

    def __init__(
        self,
        pipeline: Pipeline | Callable[[], Pipeline],
        trigger: CronTrigger | str,
        name: str | None = None,
        *,
        clock: Clock | None = None,
        missed: MissedTickPolicy | str = MissedTickPolicy.LATEST,
        grace: timedelta | float = timedelta(hours=1),
        tolerance: timedelta | float = timedelta(seconds=60),
        max_catch_up: int = 10,
        overlap: OverlapPolicy | str = OverlapPolicy.SKIP,
        logs_dir: str | Path | None = FROM_SETTINGS,
        variables: Mapping[str, Any] | None = None,
        inline: bool | None = None,
        max_workers: int = 4,
        stop_grace: float = 30.0,
        pipeline_name: str | None = None,
        trigger_name: str | None = None,
        max_active_runs: int | None = None,
        timeout: float | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> None:
        super().__init__()
        if isinstance(pipeline, Pipeline):
            self._pipeline: Pipeline | None = pipeline
            self._build: Callable[[], Pipeline] | None = None
            self.pipeline_name = pipeline.name
        elif callable(pipeline) and pipeline_name:
            self._pipeline, self._build = None, pipeline
            self.pipeline_name = check_name("pipeline", pipeline_name)
        else:
            raise ValidationError(
                f"CronScheduler needs a Pipeline (e.g. build_example_pipeline()), or a callable "
                f"building one together with pipeline_name=...; got {pipeline!r}"
            )
        self.trigger = trigger if isinstance(trigger, CronTrigger) else CronTrigger(trigger)
        self.name = check_name("scheduler", name if name is not None else self.pipeline_name)
        self.trigger_name = trigger_name
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.missed = check_policy(MissedTickPolicy, "missed-tick policy", missed)
        self.overlap = check_policy(OverlapPolicy, "overlap policy", overlap)
        self.grace = check_seconds("grace", grace)
        self.tolerance = check_seconds("tolerance", tolerance)
        if not isinstance(max_catch_up, int) or max_catch_up < 1:
            raise ValidationError(f"max_catch_up must be a whole number >= 1, got {max_catch_up!r}")
        self.max_catch_up = max_catch_up
        self.logs_dir = default_logs_dir() if logs_dir is FROM_SETTINGS else logs_dir
        if self.logs_dir is not None:
            self.logs_dir = Path(self.logs_dir)
        self.variables = dict(variables or {})
        self.max_active_runs: int | None = None
        self.timeout: float | None = None
        self.start_date: datetime | None = None
        self.end_date: datetime | None = None
        self.configure(
            check_options(
                f"scheduler {self.name!r}",
                {
                    "max_active_runs": max_active_runs,
                    "timeout": timeout,
                    "start_date": start_date,
                    "end_date": end_date,
                },
            ),
            policies=False,
        )
        self.inline = bool(getattr(self.clock, "runs_inline", False)) if inline is None else inline
        self._inline_given = inline is not None
        self.max_workers = check_workers("CronScheduler", max_workers)
        self.stop_grace = stop_grace
        # Set by a SchedulerManager that owns this scheduler (see managed_by).
        self.storage: Coordination | None = None
        self.instance_id: str | None = None
        self.run_executor: executors.Executor | None = None
        """Where whole runs execute (set by a manager; default: a thread of this process)."""
        self.runs = ScheduledRuns(self.name, self.max_workers)
        """The runs this scheduler started (see :mod:`th2etl.scheduler._runs`)."""
        self._cursor: datetime | None = None
        self._next: datetime | None = None
        self._retry_at: datetime | None = None
        self._failures = 0
        self._claims: dict[datetime, str] = {}
        """Run ids of claims whose answer never came (the database went away): the tick's
        retry claims with the same id, and so adopts the row if the claim was made.
        Touched only by the thread that ticks."""
        self.not_before: datetime | None = None
        """With a storage: downtime before this instant (e.g. while disabled) is not missed."""

    # -- what a SchedulerManager uses --------------------------------------------------------------

    def managed_by(
        self,
        *,
        clock: Clock,
        storage: Coordination | None,
        instance_id: str | None,
        inline: bool,
        run_executor: executors.Executor | None = None,
        owner: RunOwner | None = None,
    ) -> None:
        """Take a manager's clock, storage, instance id, run executor (where whole runs
        execute) and run owner (which answers for the runs started here); ``inline`` applies
        unless this scheduler was given its own. The manager then lends its pool
        (:meth:`use_executor`)."""
        self.clock = clock
        if not self._inline_given:
            self.inline = inline
        self.storage = storage
        self.instance_id = instance_id
        self.run_executor = run_executor
        self.runs.owner = owner
        self.use_executor(None)

    def use_executor(self, executor: Executor | None) -> None:
        """Run pipelines on ``executor``, which its giver owns and shuts down (``None``: this
        scheduler makes a pool of its own when it needs one)."""
        self.runs.use_pool(executor)

    def update_pipeline(
        self, pipeline_name: str, build: Callable[[], Pipeline], trigger_name: str | None
    ) -> None:
        """Run ``build()``'s pipeline from the next tick on (a stored definition changed)."""
        self.pipeline_name = check_name("pipeline", pipeline_name)
        self._pipeline, self._build = None, build
        self.trigger_name = trigger_name

    def forget_claims(self) -> None:
        """Give up retrying the claims whose answer was lost (their ticks will not be handled
        by this scheduler again); a manager's sweep settles their rows."""
        self._claims.clear()

    def configure(
        self, options: ScheduleOptions, now: datetime | None = None, *, policies: bool = True
    ) -> None:
        """Use ``options`` from the next tick on (a stored scheduler's options changed): the
        policies and variables (unless ``policies`` is False), ``max_active_runs``,
        ``timeout``, ``start_date`` and ``end_date``. Unset policies keep their value. New
        dates apply from ``now`` (default: the clock's) on, as a new cron does: ticks that
        were outside the old dates neither fire nor count as missed."""
        if policies:
            self.missed = options.missed or self.missed
            self.overlap = options.overlap or self.overlap
            self.variables = dict(options.variables)
        self.max_active_runs = options.max_active_runs
        self.timeout = options.timeout
        moved = (self.start_date, self.end_date) != (options.start_date, options.end_date)
        self.start_date, self.end_date = options.start_date, options.end_date
        if moved and self._cursor is not None:
            self.reset(max(self._cursor, now or self.clock.now()))

    # -- time keeping ---------------------------------------------------------------------------

    @property
    def cursor(self) -> datetime | None:
        """Every tick at or before this instant has been handled (``None`` before the first)."""
        return self._cursor

    def reset(self, after: datetime) -> None:
        """Forget ticks at or before ``after``: none of them will fire or count as missed."""
        self._cursor = after
        self._next = self._first_due_after(after)
        self._retry_at = None
        self.forget_claims()  # their ticks will not come again

    def retarget(self, trigger: CronTrigger, now: datetime) -> None:
        """Use a new trigger from ``now`` on: nothing fires at once and nothing is backfilled."""
        self.trigger = trigger
        self.reset(now)

    def next_due_time(self) -> datetime | None:
        if self._next is None:
            return None
        if self._retry_at is not None and self._retry_at > self._next:
            return self._retry_at
        return self._next

    def next_fire_times(self, n: int) -> list[datetime]:
        """The next ``n`` scheduled times (a preview from the scheduler's position or now)."""
        return self.trigger.next_fire_times(self._cursor or self.clock.now(), n)

    def _first_due_after(self, after: datetime) -> datetime | None:
        """The first fire time after ``after`` within ``start_date`` .. ``end_date``."""
        if self.start_date is not None and after < self.start_date:
            after = self.start_date - timedelta(microseconds=1)
        first = self.trigger.next_fire_time(after)
        return None if self.end_date is not None and first > self.end_date else first

    # -- one step -----------------------------------------------------------------------------

    def tick(self, now: datetime) -> list[TickResult]:
        """Handle every tick due at ``now`` (per the policies) and return what was done."""
        if self._cursor is None:
            self.prime(now)
        if self._next is None or now < self._next:
            return []
        if self._retry_at is not None and now < self._retry_at:
            return []
        self.retry_lost_finishes()
        assert self._cursor is not None
        due, dropped, self._next = due_ticks(
            self.trigger,
            self._cursor,
            now,
            start_date=self.start_date,
            end_date=self.end_date,
            keep=max(self.max_catch_up, RECORDED_MISSED_LIMIT) + 1,
        )
        if dropped:
            logger.warning(
                "scheduler %r: %d older missed tick(s) before %s are not recorded",
                self.name,
                dropped,
                due[0].isoformat(),
            )
        results: list[TickResult] = []
        plan = plan_ticks(
            due,
            now,
            policy=self.missed,
            tolerance=self.tolerance,
            grace=self.grace,
            max_catch_up=self.max_catch_up,
        )
        for scheduled, missed_detail in list(plan):
            try:
                if missed_detail is not None:
                    result = self._skip(scheduled, SkipReason.MISSED, missed_detail, now)
                else:
                    result = self._fire(scheduled, now)
            except StorageError as exc:
                results.append(self._defer(scheduled, now, exc))
                return results
            results.append(result)
            self._cursor = scheduled
        if self._claims:  # a claimed tick dropped from a long catch-up is left to the manager
            self._claims = {t: i for t, i in self._claims.items() if t > due[-1]}
        self._failures = 0
        self._retry_at = None  # and _next is the first tick after now
        return results

    def prime(self, now: datetime) -> None:
        """Start counting ticks from ``now`` unless already counting (``start()`` does this).

        Without a storage, ticks before ``now`` are not due. With one, the scheduler resumes
        after its last recorded tick, so ticks missed while it was down are handled by the
        missed-tick policy (not before ``not_before``, nor for a scheduler that never ran).
        """
        if self._cursor is None:
            self.reset(self._initial_cursor(now))

    def _initial_cursor(self, now: datetime) -> datetime:
        if self.storage is None:
            return now
        try:
            latest = self.storage.latest_scheduled_time(self.name)
        except StorageError as exc:
            logger.warning("scheduler %r: cannot read its last tick (%s)", self.name, exc)
            return now
        if latest is None:
            return now
        if self.not_before is not None:
            latest = max(latest, self.not_before)
        return min(latest, now)

    def _on_start(self, now: datetime) -> None:
        self.prime(now)

    def _defer(self, scheduled: datetime, now: datetime, exc: Exception) -> TickResult:
        self._failures += 1
        delay = backoff(self._failures)
        self._retry_at = now + timedelta(seconds=delay)
        self._next = scheduled
        log = logger.warning if self._failures == 1 else logger.info
        log(
            "scheduler %r: the database is unavailable for the tick at %s (%s); retrying in %.0fs",
            self.name,
            scheduled.isoformat(),
            exc,
            delay,
        )
        return TickResult(self.name, scheduled, TickAction.DEFERRED, detail=str(exc))

    def _skip(
        self, scheduled: datetime, reason: SkipReason, detail: str, now: datetime
    ) -> TickResult:
        logger.info(
            "scheduler %r skips the tick at %s (%s: %s)",
            self.name,
            scheduled.isoformat(),
            reason.value,
            detail,
        )
        if self.storage is not None and scheduled in self._claims:
            return self._skip_claimed(scheduled, reason, detail, now)
        run_id = None
        if self.storage is not None:
            record = self.storage.record_skipped_run(
                self.name,
                scheduled,
                f"{reason.value}: {detail}",
                pipeline_name=self.pipeline_name,
                trigger_name=self.trigger_name,
                instance_id=self.instance_id,
                now=now,
            )
            if record is None:
                return TickResult(self.name, scheduled, TickAction.TAKEN)
            run_id = record.run_id
        return TickResult(self.name, scheduled, TickAction.SKIPPED, reason, detail, run_id)

    def _skip_claimed(
        self, scheduled: datetime, reason: SkipReason, detail: str, now: datetime
    ) -> TickResult:
        """Skip a tick whose claim may have been made without our hearing of it: adopt the
        claim, if it was made, and record it skipped (a claim that was not made is made now)."""
        assert self.storage is not None
        record = self._claim(scheduled, now)
        if record is not None:
            self.storage.finish_run(
                record.run_id, RunStatus.SKIPPED, finished_at=now, error=f"{reason.value}: {detail}"
            )
        del self._claims[scheduled]  # only now: until the skip is recorded, a retry adopts
        if record is None:
            return TickResult(self.name, scheduled, TickAction.TAKEN)
        return TickResult(self.name, scheduled, TickAction.SKIPPED, reason, detail, record.run_id)

    def _claim(self, scheduled: datetime, now: datetime) -> RunRecord | None:
        """Claim the tick under the id in ``_claims`` (a new one if none): the caller removes
        it once done with the answer, so a retry after a lost answer adopts the claim."""
        assert self.storage is not None
        run_id = self._claims.setdefault(scheduled, uuid.uuid4().hex)
        return self.storage.claim_run(
            self.name,
            scheduled,
            pipeline_name=self.pipeline_name,
            trigger_name=self.trigger_name,
            instance_id=self.instance_id,
            now=now,
            variables=self.variables,
            run_id=run_id,
            logical_time=self.logical_time(scheduled),
            executor=self.executor_kind,
        )

    @property
    def executor_kind(self) -> str:
        """The kind of executor this scheduler's runs execute on (recorded with each run)."""
        if self.inline or self.run_executor is None:
            return ThreadExecutor.kind
        return self.run_executor.kind

    def logical_time(self, scheduled: datetime) -> LogicalTime:
        """The moment and data interval the run of the tick at ``scheduled`` is for."""
        return self.trigger.logical_time(scheduled)

    def _active_count(self, scheduled: datetime) -> int:
        """Runs of this schedule queued or running: in the database (manual, backfill and
        dependency runs included) when a storage is attached, else here."""
        if self.storage is None:
            return self.runs.count()
        own = self._claims.get(scheduled)
        return sum(1 for run in self.storage.active_runs(self.name) if run.run_id != own)

    def is_busy(self) -> bool:
        """True while a run of this scheduler (started here) is queued or going."""
        return self.runs.busy()

    def _fire(self, scheduled: datetime, now: datetime) -> TickResult:
        if self.overlap is OverlapPolicy.SKIP:
            busy = self.is_busy()
            elsewhere = [] if busy or self.storage is None else self.storage.active_runs(self.name)
            # This tick's own claim, made before the database went away, is not a previous run.
            elsewhere = [r for r in elsewhere if r.run_id != self._claims.get(scheduled)]
            if busy or elsewhere:
                which = "here" if busy else f"run {elsewhere[0].run_id}"
                return self._skip(
                    scheduled, SkipReason.OVERLAP, f"the previous run is still going ({which})", now
                )
        if self.max_active_runs is not None:
            active = self._active_count(scheduled)
            if active >= self.max_active_runs:
                detail = (
                    f"{active} run(s) of this schedule are queued or running, its "
                    f"max_active_runs is {self.max_active_runs}"
                )
                return self._skip(scheduled, SkipReason.MAX_ACTIVE, detail, now)
        logical_time = self.logical_time(scheduled)
        run_id = uuid.uuid4().hex
        if self.storage is not None:
            record = self._claim(scheduled, now)
            del self._claims[scheduled]
            if record is None:
                return TickResult(self.name, scheduled, TickAction.TAKEN)
            run_id = record.run_id
        logger.info("scheduler %r starts run %s for %s", self.name, run_id, scheduled.isoformat())
        going = Going(run_id, scheduled)
        if self.inline:
            self.runs.begin(going)
            result = self._execute(scheduled, run_id, going, logical_time)
            if result is None:
                return TickResult(self.name, scheduled, TickAction.FAILED, run_id=run_id)
            return TickResult(
                self.name, scheduled, TickAction.STARTED, run_id=run_id, result=result
            )
        self.runs.begin(going, partial(self._execute, scheduled, run_id, going, logical_time))
        return TickResult(self.name, scheduled, TickAction.STARTED, run_id=run_id)

    # -- one run -------------------------------------------------------------------------------

    def _run_executor(self) -> executors.Executor:
        if self.inline:  # the caller's thread, blocs one after another: deterministic
            return ThreadExecutor(self.storage, clock=self.clock, inline=True)
        if self.run_executor is None:
            self.run_executor = ThreadExecutor(self.storage, clock=self.clock)
        return self.run_executor

    def _execute(
        self, scheduled: datetime, run_id: str, going: Going, logical_time: LogicalTime
    ) -> RunResult | None:
        """Run the pipeline once on the run executor, and wait for it (in a pool thread, or
        inline on a fake clock)."""
        try:
            pipeline = self._pipeline if self._pipeline is not None else self._build_pipeline()
            pipeline = with_timeout(pipeline, self.timeout)
            run_dir = None
            if self.logs_dir is not None:
                run_dir = make_run_dir(Path(self.logs_dir), self.name, scheduled)
            job = executors.RunJob(
                run_id,
                pipeline,
                variables=self.variables,
                scheduler_name=self.name,
                trigger_name=self.trigger_name,
                scheduled_time=scheduled,
                instance_id=self.instance_id,
                output_dir=run_dir,
                logical_time=logical_time,
                log_file=None if run_dir is None else run_dir / "run.log",
                note=(
                    f"run {run_id} of scheduler {self.name!r} (pipeline {pipeline.name!r}, "
                    f"trigger {self.trigger!r}) for {scheduled.isoformat()} in {run_dir}"
                ),
            )
            return self.runs.execute(job, going, self._run_executor(), self.storage)
        except Exception as exc:
            logger.exception("scheduler %r could not run its pipeline for %s", self.name, scheduled)
            self.runs.record_failure(self.storage, run_id, exc, self.clock.now())
            return None
        finally:
            self.runs.end(run_id)

    def _build_pipeline(self) -> Pipeline:
        assert self._build is not None
        return self._build()

    def retry_lost_finishes(self) -> None:
        """Record final statuses the database missed while it was away (no run stays
        ``running`` forever because of an outage). The manager calls this at every heartbeat,
        the scheduler before its ticks."""
        self.runs.retry_lost_finishes(self.storage)

    def owes_work(self) -> bool:
        """Whether runs of this scheduler still need it: going, or their status unwritten."""
        return self.runs.owes_work()

    def known_runs(self) -> set[str]:
        """Ids of the runs this scheduler answers for: going, their final status not yet
        written, or claimed without an answer. Any other ``running`` row of this instance is
        one it lost track of."""
        return {*self.runs.ids(), *self._claims.values()}

    # -- stopping ------------------------------------------------------------------------------

    def running_runs(self) -> list[tuple[str, datetime]]:
        """(run id, scheduled time) of the runs this scheduler started that are still going."""
        return self.runs.running()

    def cancel_run(self, run_id: str) -> bool:
        """Ask a running run of this scheduler to stop; False if it is not running here."""
        return self.runs.cancel(run_id)

    def wait_for_runs(self, grace: float) -> None:
        executor_grace = self.run_executor.grace if self.run_executor is not None else 0.0
        self.runs.wait(grace, executor_grace)

    def _on_stop(self, grace: float) -> None:
        self.wait_for_runs(grace)
        self.runs.shutdown_pool()

    def __repr__(self) -> str:
        return (
            f"CronScheduler(name={self.name!r}, pipeline={self.pipeline_name!r}, "
            f"trigger={self.trigger!r})"
        )


def schedule_pipeline(
    pipeline: Pipeline,
    cron: str,
    name: str | None = None,
    timezone: str = "UTC",
    clock: Clock | None = None,
    **options: Any,
) -> CronScheduler:
    """A :class:`CronScheduler` running ``pipeline`` on the cron expression ``cron``.

    >>> scheduler = schedule_pipeline(build_example_pipeline(), "0 * * * *")  # doctest: +SKIP
    >>> scheduler.start()  # doctest: +SKIP
    """
    return CronScheduler(pipeline, CronTrigger(cron, timezone), name, clock=clock, **options)
