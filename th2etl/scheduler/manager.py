"""SchedulerManager: many schedulers on one clock and thread pool; the database-driven manager.

``SchedulerManager([...])`` runs in-code schedulers side by side, each on its own cadence, their
pipelines on one shared thread pool. :func:`load_scheduler_manager` builds the manager from the
enabled schedulers stored in a :class:`~th2etl.storage.base.Storage` and keeps following it:

* **Hot reload.** Every ``reload_interval`` seconds (default 5) it reads ``storage.revision()``;
  when it moved, schedulers created or enabled are added, disabled or deleted ones removed
  (their running pipelines finish), and a changed trigger is used from that moment: editing a
  cron never fires at once and never backfills. Changed options
  (:mod:`th2etl.scheduler.options`, the stored defaults included) apply from the next tick.
  Pipelines are built from the stored definitions for each run, so bloc and pipeline edits
  apply to the next run.
* **Exactly once across processes.** Every tick is claimed with ``storage.claim_run`` (one
  insert guarded by a unique (scheduler, scheduled time)); whichever instance wins runs it, the
  others report :attr:`~th2etl.scheduler.TickAction.TAKEN`. Skipped ticks are recorded under the
  same uniqueness. A claim whose answer is lost (the connection drops after COMMIT) is retried
  with the same run id and adopted (see ``Coordination.claim_run``): the tick runs once, not never.
* **Heartbeats and lease.** With a storage, the manager owns its runs through a
  :class:`~th2etl.storage.owner.RunOwner` (``instance_id``), the same as the API's and the CLI's
  runs: on a real clock, from ``start()`` to the end of ``stop()``, it heartbeats every
  ``heartbeat_interval`` seconds (default: the ``TH2ETL_HEARTBEAT_INTERVAL`` setting, 10) on
  a thread and a connection of its own, by the database's clock, so a slow tick, a blocked
  tick thread or a loaded process never delays it; each heartbeat renews its lease of
  ``stale_after`` (default 1.5 heartbeat intervals), stored with the heartbeat so that every
  other process judges this manager by it, marks ``abandoned`` the runs of instances whose own
  stored lease has ended (so a run left by a dead process is abandoned within its owner's
  lease plus half a heartbeat period of the sweeping process, which also sweeps halfway between
  its heartbeats; rows without a lease, from before
  schema version 8, are judged by this manager's ``stale_after``), and stops the runs of this
  manager whose cancel was asked from any process. When its lease
  lapses (the database is away) the owner stops the manager's runs and they end ``abandoned``
  everywhere; see :mod:`th2etl.storage.owner`. On a fake clock the manager sends the heartbeats
  itself, at ``tick(now)``, stamped with the fake time (no thread, no lease). At each heartbeat
  period the tick also settles the manager's own runs: final statuses the database missed are
  written again (also for schedulers removed since), and an active row of this instance that
  none of its schedulers answers for is marked ``abandoned``; so no run stays active forever
  because its instance lives. ``stop()`` settles them once more (a claimed tick it will not
  retry is marked ``abandoned``). ``instance_id`` must therefore be this manager's own (the
  default is unique per process).
* **Where runs execute.** ``executor`` (an :class:`~th2etl.executors.Executor`) runs each
  whole run; default: a thread of this process. ``th2etl`` and ``th2etl --serve-api`` pass the
  one ``TH2ETL_EXECUTOR`` names (worker processes by default).
* **Outages.** When the database cannot be reached, ticks are deferred (not run: nothing can be
  claimed) and retried with exponential backoff (1 s doubling to 30 s; the heartbeats, on
  their own thread, are retried within the lease, see :mod:`th2etl.storage.owner`); the
  manager logs the
  outage once, keeps its timing, and when the database is back handles the deferred ticks by the
  missed-tick policy. (Other instances' runs are not abandoned too early when the database
  comes back: an instance whose heartbeats are stale has stopped them, its lease lapsed.)
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from th2etl.clock import Clock, SystemClock
from th2etl.exceptions import CronError, NotFoundError, StorageError, ValidationError
from th2etl.pipelines.pipeline import Pipeline
from th2etl.pipelines.result import RunStatus
from th2etl.scheduler._loop import BACKOFF_MAX, Loop, backoff
from th2etl.scheduler.dependencies import DependentScheduler
from th2etl.scheduler.options import BUILT_IN, ScheduleDefaults, ScheduleOptions, check_defaults
from th2etl.scheduler.policies import TickResult, check_seconds, check_workers
from th2etl.scheduler.scheduler import CronScheduler
from th2etl.scheduler.triggers import CronTrigger
from th2etl.storage.owner import RunOwner

if TYPE_CHECKING:
    from th2etl.executors import Executor
    from th2etl.storage.base import SchedulerRecord, Storage, TriggerRecord
    from th2etl.storage.coordination import Coordination
    from th2etl.storage.definition_store import DefinitionStore

__all__ = ["SchedulerManager", "default_instance_id", "load_scheduler_manager"]

logger = logging.getLogger(__name__)


def default_instance_id() -> str:
    """``<host>-<pid>-<random>``: unique per process, readable in the instances table."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class SchedulerManager(Loop):
    """Runs several :class:`CronScheduler` side by side, each on its own cadence.

    The schedulers share the manager's ``clock`` (by default the one they were given, which must
    then be the same object for all of them) and a pool of ``max_workers`` threads for their
    pipelines. ``tick(now)`` ticks every scheduler; ``start()`` loops until ``stop()``, SIGINT or
    SIGTERM. With a ``storage``, ticks are claimed and recorded there (exactly once across
    instances) and the manager sends heartbeats; see :func:`load_scheduler_manager`.
    """

    def __init__(
        self,
        schedulers: Iterable[CronScheduler] = (),
        *,
        clock: Clock | None = None,
        storage: Coordination | None = None,
        instance_id: str | None = None,
        max_workers: int = 32,
        stop_grace: float = 30.0,
        heartbeat_interval: timedelta | float | None = None,
        stale_after: timedelta | float | None = None,
        inline: bool | None = None,
        executor: Executor | None = None,
    ) -> None:
        super().__init__()
        schedulers = list(schedulers)
        for scheduler in schedulers:
            if not isinstance(scheduler, CronScheduler):
                raise ValidationError(
                    f"SchedulerManager takes CronScheduler objects, got {scheduler!r}"
                )
        self.clock = clock if clock is not None else _common_clock(schedulers)
        self.storage = storage
        self.instance_id = instance_id or (default_instance_id() if storage else None)
        self.max_workers = check_workers("SchedulerManager", max_workers)
        self.stop_grace = stop_grace
        self.inline = bool(getattr(self.clock, "runs_inline", False)) if inline is None else inline
        if heartbeat_interval is None:
            # The setting, as the API's and the CLI's owners use (others judge each owner by
            # the lease it stores, so processes may differ).
            heartbeat_interval = 10.0
            if storage is not None:
                from th2etl.configs.settings import get_settings

                heartbeat_interval = get_settings().heartbeat_interval
        self.heartbeat_interval = check_seconds("heartbeat_interval", heartbeat_interval)
        if self.heartbeat_interval <= timedelta(0):
            raise ValidationError(
                f"heartbeat_interval must be more than 0 seconds, got {heartbeat_interval!r}"
            )
        self.stale_after = (
            self.heartbeat_interval * 3 / 2
            if stale_after is None
            else check_seconds("stale_after", stale_after)
        )
        self.owner: RunOwner | None = None
        """Owns this manager's runs (heartbeats, lease, cancels); None without a storage."""
        if storage is not None and self.instance_id:
            self.owner = RunOwner(
                storage,
                kind="scheduler",
                instance_id=self.instance_id,
                heartbeat_interval=self.heartbeat_interval.total_seconds(),
                stale_after=self.stale_after.total_seconds(),
            )
        self._executor: Any = None
        self.run_executor = executor
        self._schedulers: dict[str, CronScheduler] = {}
        self._retired: list[CronScheduler] = []
        self._next_heartbeat: datetime | None = None
        self._storage_failures = 0
        for scheduler in schedulers:
            self.add(scheduler)

    # -- membership ---------------------------------------------------------------------------

    def add(self, scheduler: CronScheduler) -> CronScheduler:
        """Manage ``scheduler`` (it takes the manager's clock, pool and storage)."""
        if scheduler.name in self._schedulers:
            raise ValidationError(
                f"scheduler name {scheduler.name!r} is used twice in this manager; give each "
                "CronScheduler its own name=..."
            )
        scheduler.managed_by(
            clock=self.clock,
            storage=self.storage,
            instance_id=self.instance_id,
            inline=self.inline,
            run_executor=self.run_executor,
            owner=self.owner,
        )
        if not scheduler.inline:
            scheduler.use_executor(self._get_executor())
        self._schedulers[scheduler.name] = scheduler
        if self._started:
            scheduler.prime(self.clock.now())
        return scheduler

    def remove(self, name: str) -> CronScheduler:
        """Stop scheduling ``name``; its running pipelines finish (and are awaited on stop)."""
        scheduler = self[name]
        del self._schedulers[name]
        if scheduler.owes_work():
            self._retired.append(scheduler)
        return scheduler

    def __getitem__(self, name: str) -> CronScheduler:
        try:
            return self._schedulers[name]
        except KeyError:
            raise NotFoundError(
                f"this manager has no scheduler {name!r}; it has: {', '.join(self) or 'none'}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._schedulers

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._schedulers))

    def __len__(self) -> int:
        return len(self._schedulers)

    @property
    def schedulers(self) -> list[CronScheduler]:
        """The managed schedulers, by name."""
        return [self._schedulers[name] for name in sorted(self._schedulers)]

    def _get_executor(self) -> Any:
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix="th2etl-sched"
            )
        return self._executor

    # -- one step ---------------------------------------------------------------------------

    def tick(self, now: datetime) -> list[TickResult]:
        """Housekeeping when due (heartbeat, abandoned runs, reload), then tick every scheduler."""
        if self.storage is not None and (
            self._next_heartbeat is None or now >= self._next_heartbeat
        ):
            self._housekeeping(now)
        results: list[TickResult] = []
        for scheduler in list(self._schedulers.values()):
            results.extend(scheduler.tick(now))
        if self._retired:
            self._retired = [s for s in self._retired if s.owes_work()]
        return results

    def next_due_time(self) -> datetime | None:
        due = [d for d in (s.next_due_time() for s in self._schedulers.values()) if d is not None]
        if self.storage is not None and self._next_heartbeat is not None:
            due.append(self._next_heartbeat)
        return min(due, default=None)

    def _housekeeping(self, now: datetime) -> None:
        """At each heartbeat period: the heartbeat itself when the owner has no thread (a fake
        clock, or ticks driven without ``start()``), then settle this manager's runs."""
        assert self.storage is not None
        try:
            if self.owner is not None and not self.owner.started:
                # Liveness is judged by the database's clock (hosts' clocks may disagree),
                # unless this manager runs on a fake clock, which then drives everything.
                self.owner.beat(None if isinstance(self.clock, SystemClock) else now)
            if self._storage_failures:
                logger.warning("the database is reachable again (%s)", self.storage.describe())
            self._storage_failures = 0
            self._settle_own_runs(now)
            self._next_heartbeat = now + self.heartbeat_interval
        except StorageError as exc:
            self._storage_failures += 1
            # Retried within half a heartbeat period, so that a heartbeat sent here is renewed
            # before other instances count this one stale (after 1.5 periods).
            delay = min(
                backoff(self._storage_failures), self.heartbeat_interval.total_seconds() / 2
            )
            log = logger.warning if self._storage_failures == 1 else logger.info
            log("the database is unavailable (%s); retrying in %.0fs", exc, delay)
            self._next_heartbeat = now + timedelta(seconds=delay)

    def _settle_own_runs(self, now: datetime) -> None:
        """No run of this instance stays ``running`` forever while the instance lives: final
        statuses the database missed are written again, and a ``running`` row of this
        instance that no scheduler here answers for (a claim whose answer was lost and whose
        tick will not come again, a run of an earlier process with the same instance id) is
        marked ``abandoned``."""
        assert self.storage is not None
        schedulers = [*self._schedulers.values(), *self._retired]
        for scheduler in schedulers:
            scheduler.retry_lost_finishes()
        # Read what runs here before the database: a run that starts in between cannot exist
        # (ticks run in this thread), one that ends in between is still in ``known``.
        known: set[str] = set().union(*(s.known_runs() for s in schedulers))
        for run in self.storage.active_runs():
            if run.instance_id != self.instance_id or run.run_id in known:
                continue
            reason = (
                f"abandoned: its instance {self.instance_id} is alive but no longer runs it "
                f"(its start or its outcome was lost to a database error; checked at "
                f"{now.isoformat()})"
            )
            self.storage.append_run_log(run.run_id, f"{now.isoformat()} {reason}\n")
            self.storage.finish_run(run.run_id, RunStatus.ABANDONED, finished_at=now, error=reason)
            logger.warning("run %s was left running by this instance; marked abandoned", run.run_id)

    # -- start and stop ------------------------------------------------------------------------

    def _on_start(self, now: datetime) -> None:
        if self.owner is not None and isinstance(self.clock, SystemClock):
            # Its own thread and connection: nothing the ticks do can delay a heartbeat.
            self.owner.start(require_database=False)
        for scheduler in self._schedulers.values():
            if not scheduler.inline:  # the pool is made again when started after stop
                scheduler.use_executor(self._get_executor())
            scheduler.prime(now)

    def _on_stop(self, grace: float) -> None:
        for scheduler in [*self._schedulers.values(), *self._retired]:
            scheduler.wait_for_runs(grace)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
            for scheduler in self._schedulers.values():
                scheduler.use_executor(None)
        if self.storage is not None and self.instance_id:
            for scheduler in [*self._schedulers.values(), *self._retired]:
                scheduler.forget_claims()  # their ticks will not be retried by this manager
            try:
                self._settle_own_runs(self.clock.now())
            except StorageError as exc:
                logger.warning("cannot settle the runs of %s on stop: %s", self.instance_id, exc)
            if self.owner is not None and self.owner.started:
                self.owner.stop()  # its last heartbeat, then the instance is removed
                return
            try:
                self.storage.remove_instance(self.instance_id)
            except StorageError as exc:
                logger.warning("cannot remove instance %s on stop: %s", self.instance_id, exc)

    def __repr__(self) -> str:
        return f"SchedulerManager({', '.join(self) or 'no schedulers'})"


def _common_clock(schedulers: list[CronScheduler]) -> Clock:
    clocks = {id(s.clock): s.clock for s in schedulers if not isinstance(s.clock, SystemClock)}
    if len(clocks) > 1:
        raise ValidationError(
            "the schedulers given to SchedulerManager use different clocks; create them with "
            "the same clock=... or pass clock=... to SchedulerManager"
        )
    return next(iter(clocks.values())) if clocks else SystemClock()


class _DatabaseManager(SchedulerManager):
    """A manager that follows the stored schedulers (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        *,
        reload_interval: timedelta | float,
        scheduler_options: dict[str, Any],
        **options: Any,
    ) -> None:
        super().__init__((), storage=storage, **options)
        self.definitions = storage
        self.reload_interval = check_seconds("reload_interval", reload_interval)
        self.scheduler_options = scheduler_options
        self._revision: int | None = None
        self._next_reload: datetime | None = None
        self._keys: dict[str, tuple[str, ...]] = {}
        self._defaults = ScheduleDefaults()
        self._process = check_defaults(
            "load_scheduler_manager",
            {k: v for k, v in scheduler_options.items() if k in ("missed", "overlap")},
        )
        self._process_variables = dict(scheduler_options.get("variables") or {})

    def tick(self, now: datetime) -> list[TickResult]:
        if self._next_reload is None or now >= self._next_reload:
            self.reload(now)
        return super().tick(now)

    def next_due_time(self) -> datetime | None:
        due = super().next_due_time()
        if self._next_reload is not None and (due is None or self._next_reload < due):
            return self._next_reload
        return due

    def reload(self, now: datetime | None = None, *, force: bool = False) -> bool:
        """Re-read the stored schedulers if the database changed; True if anything changed.
        A database error is logged and retried with backoff."""
        now = now if now is not None else self.clock.now()
        try:
            revision = self.definitions.revision()
            if revision == self._revision and not force:
                self._next_reload = now + self.reload_interval
                return False
            records = self.definitions.list_schedulers(enabled=True)
            triggers = {t.name: t for t in self.definitions.list_triggers()}
            self._defaults = self.definitions.get_schedule_defaults()
        except StorageError as exc:
            delay = min(self.reload_interval.total_seconds(), BACKOFF_MAX)
            logger.warning("cannot read the stored schedulers (%s); retrying in %.0fs", exc, delay)
            self._next_reload = now + timedelta(seconds=delay)
            return False
        self._revision = revision
        self._next_reload = now + self.reload_interval
        return self._apply(records, triggers, now)

    def _apply(
        self, records: list[SchedulerRecord], triggers: dict[str, TriggerRecord], now: datetime
    ) -> bool:
        changed = False
        wanted: set[str] = set()
        for record in records:
            if record.trigger_name is None:
                changed |= self._apply_dependent(record, now)
                wanted.add(record.name)
                continue
            trigger_record = triggers.get(record.trigger_name)
            if trigger_record is None:
                logger.error(
                    "scheduler %r uses trigger %r, which does not exist; not scheduled",
                    record.name,
                    record.trigger_name,
                )
                continue
            options = self._options(record)
            key = (
                record.pipeline_name,
                record.trigger_name,
                trigger_record.cron_expression,
                trigger_record.timezone,
                repr(options),
            )
            wanted.add(record.name)
            if self._keys.get(record.name) == key:
                continue
            try:
                trigger = CronTrigger(trigger_record.cron_expression, trigger_record.timezone)
            except CronError as exc:
                logger.error("scheduler %r is not scheduled: %s", record.name, exc)
                wanted.discard(record.name)
                continue
            existing = self._schedulers.get(record.name)
            if isinstance(existing, DependentScheduler):  # it was fired by other pipelines
                self.remove(record.name)
                existing = None
            if existing is not None:
                existing.update_pipeline(
                    record.pipeline_name,
                    _builder(self.definitions, record.pipeline_name),
                    record.trigger_name,
                )
                existing.configure(options, now)
                if existing.trigger != trigger:
                    existing.retarget(trigger, now)
                logger.info("scheduler %r updated: %r from now on", record.name, trigger)
            else:
                scheduler = CronScheduler(
                    _builder(self.definitions, record.pipeline_name),
                    trigger,
                    record.name,
                    pipeline_name=record.pipeline_name,
                    trigger_name=record.trigger_name,
                    clock=self.clock,
                    **self.scheduler_options,
                )
                scheduler.configure(options)
                scheduler.not_before = max(record.updated_at, trigger_record.updated_at)
                self.add(scheduler)
                logger.info("scheduler %r loaded: %r", record.name, trigger)
            self._keys[record.name] = key
            changed = True
        for name in [name for name in self._schedulers if name not in wanted]:
            self.remove(name)
            self._keys.pop(name, None)
            logger.info("scheduler %r removed (deleted or disabled)", name)
            changed = True
        return changed

    def _apply_dependent(self, record: SchedulerRecord, now: datetime) -> bool:
        """Load or update a scheduler fired by ``after_pipelines``; True if anything changed."""
        options = self._options(record)
        key = (record.pipeline_name, *record.after_pipelines, repr(options))
        if self._keys.get(record.name) == key:
            return False
        existing = self._schedulers.get(record.name)
        if existing is not None and not isinstance(existing, DependentScheduler):
            self.remove(record.name)
            existing = None
        build = _builder(self.definitions, record.pipeline_name)
        if existing is None:
            existing = DependentScheduler(
                build,
                record.after_pipelines,
                record.name,
                pipeline_name=record.pipeline_name,
                clock=self.clock,
                **self.scheduler_options,
            )
            existing.not_before = record.updated_at
            existing.configure(options)
            self.add(existing)
            logger.info("scheduler %r loaded: after %s", record.name, record.after_pipelines)
        else:
            existing.update_pipeline(record.pipeline_name, build, None)
            existing.after_pipelines = list(record.after_pipelines)
            existing.configure(options, now)
            logger.info("scheduler %r updated: after %s", record.name, record.after_pipelines)
        self._keys[record.name] = key
        return True

    def _options(self, record: SchedulerRecord) -> ScheduleOptions:
        """The scheduler's options with unset ones filled in (see
        :mod:`th2etl.scheduler.options`: its own, the database's, this process's, built-in);
        the process's variables are the base its own override."""
        options = record.options.effective(self._defaults, self._process, BUILT_IN)
        return replace(options, variables={**self._process_variables, **options.variables})


def _builder(storage: DefinitionStore, pipeline_name: str) -> Callable[[], Pipeline]:
    def build() -> Pipeline:
        return storage.build_pipeline(pipeline_name)

    return build


def load_scheduler_manager(
    storage: Storage,
    clock: Clock | None = None,
    instance_id: str | None = None,
    *,
    reload_interval: timedelta | float = 5.0,
    heartbeat_interval: timedelta | float | None = None,
    stale_after: timedelta | float | None = None,
    max_workers: int = 32,
    stop_grace: float = 30.0,
    inline: bool | None = None,
    executor: Executor | None = None,
    **scheduler_options: Any,
) -> SchedulerManager:
    """A :class:`SchedulerManager` running the enabled schedulers stored in ``storage``, and
    following the database from then on (see the module docstring).

    ``executor`` runs each whole run (default: a thread of this process; e.g.
    ``make_executor("process", storage)`` for worker processes).
    ``scheduler_options`` go to every :class:`CronScheduler` (``missed``, ``grace``,
    ``tolerance``, ``max_catch_up``, ``overlap``, ``logs_dir``, ``variables``). They are for
    embedded use (a program running its own manager): a stored scheduler's own options and the
    stored defaults win over ``missed``, ``overlap`` and ``variables`` (whose keys the stored
    ones override), so that every process treats a schedule alike; see
    :mod:`th2etl.scheduler.options`. The stored
    schedulers are read at once; if the database is unreachable the manager logs it and keeps
    trying.

    >>> with DatabaseStorage.from_settings(get_settings()) as storage:  # doctest: +SKIP
    ...     manager = load_scheduler_manager(storage)
    ...     manager.start()
    """
    for option in scheduler_options:
        if option not in _SCHEDULER_OPTIONS:
            raise ValidationError(
                f"load_scheduler_manager got an unknown option {option!r}; scheduler options "
                f"are: {', '.join(sorted(_SCHEDULER_OPTIONS))}"
            )
    # Check the option values now, not at the first reload.
    CronScheduler(
        _no_pipeline, "* * * * *", "options", pipeline_name="options", **scheduler_options
    )
    manager = _DatabaseManager(
        storage,
        reload_interval=reload_interval,
        scheduler_options=dict(scheduler_options),
        clock=clock,
        instance_id=instance_id,
        heartbeat_interval=heartbeat_interval,
        stale_after=stale_after,
        max_workers=max_workers,
        stop_grace=stop_grace,
        inline=inline,
        executor=executor,
    )
    manager.reload(manager.clock.now(), force=True)
    return manager


def _no_pipeline() -> Pipeline:
    raise NotImplementedError


_SCHEDULER_OPTIONS = frozenset(
    {"missed", "grace", "tolerance", "max_catch_up", "overlap", "logs_dir", "variables"}
)
