"""Coordination in SQL: claims, the queue, heartbeats, abandoned runs and cancel requests
(:mod:`th2etl.storage.coordination`).

Liveness is judged by the database's clock: templates say ``{db_now}`` (the server's
``now()`` on PostgreSQL, the host clock on SQLite), ``{db_ago}`` and ``{db_later}`` (that
instant minus or plus ``%s`` seconds), unless the caller passes its own ``now`` (a fake clock
in tests). A heartbeat stores when its owner's lease ends (``lease_until``, by that clock);
the sweep compares it with the same clock.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from th2etl.exceptions import QueueFullError, RunFinishedError, ValidationError
from th2etl.logical_time import LogicalTime
from th2etl.pipelines.result import TERMINAL_STATUSES, RunStatus
from th2etl.storage._core import Conflict, Session, aware, dump_json
from th2etl.storage._runs import ACTIVE, RUN, Runs, run_missing, variables_json
from th2etl.storage.records import InstanceRecord, RunRecord

__all__ = ["INSERT_RUN", "Coordinating"]

_INSTANCE = "instance_id, started_at, last_seen, hostname, pid, info, lease_until"
_NEW_RUN = (
    "run_id, pipeline_name, status, started_at, finished_at, scheduler_name, trigger_name, "
    "scheduled_time, variables, error, owner_id, started_by, queued_at, claimed_at, "
    "definition, timeout, executor, attempt, interval_start, interval_end, logical_timezone"
)
_NEW_RUN_VALUES = ", ".join(["%s"] * len(_NEW_RUN.split(", ")))
INSERT_RUN = f"INSERT INTO {{runs}} AS r ({_NEW_RUN}) VALUES ({_NEW_RUN_VALUES}) "
_TICK = (
    INSERT_RUN
    # The unique (scheduler_name, scheduled_time, attempt) constraint decides who gets the
    # tick. The no-op update returns the row only to a retry of the claim that made it (same
    # run id), while it is not finished: an answer lost after COMMIT is not a lost tick.
    + "ON CONFLICT (scheduler_name, scheduled_time, attempt) DO UPDATE SET status = r.status "
    f"WHERE r.run_id = excluded.run_id AND r.status IN ({ACTIVE}) RETURNING {RUN}"
)
# An owner is stale once its own lease has ended (``lease_until``, written at each heartbeat),
# or, for a row that records none (written before schema version 8), once it has been silent
# for the sweeper's ``stale_after`` (CUTOFF). A run whose owner has no row at all is stale
# once it was recorded before CUTOFF.
_STALE = "(i.lease_until < NOW OR (i.lease_until IS NULL AND i.last_seen < CUTOFF))"
_STALE_OWNERS = (
    "SELECT DISTINCT r.owner_id, i.instance_id, i.last_seen, i.lease_until FROM {runs} AS r "
    "LEFT JOIN {instances} AS i ON i.instance_id = r.owner_id "
    f"WHERE r.status IN ({ACTIVE}) AND r.owner_id IS NOT NULL AND ("
    f"(i.instance_id IS NOT NULL AND {_STALE}) "
    "OR (i.instance_id IS NULL AND COALESCE(r.queued_at, r.started_at) < CUTOFF))"
)
_ABANDON = (
    "UPDATE {runs} AS r SET status = 'abandoned', finished_at = %s, error = %s, "
    f"log = log || %s WHERE r.owner_id = %s AND r.status IN ({ACTIVE}) AND "
)
# Each re-checks, in the statement that marks, that the owner is still stale: one that
# renewed its lease meanwhile keeps its runs.
_ABANDON_STALE = (
    _ABANDON + "EXISTS (SELECT 1 FROM {instances} AS i WHERE i.instance_id = r.owner_id "
    f"AND {_STALE}) RETURNING run_id"
)
_ABANDON_UNKNOWN = (
    _ABANDON + "COALESCE(r.queued_at, r.started_at) < CUTOFF AND NOT EXISTS ("
    "SELECT 1 FROM {instances} AS i WHERE i.instance_id = r.owner_id) RETURNING run_id"
)


def _clocked(
    template: str, marks: Mapping[str, tuple[str, tuple[Any, ...]]]
) -> tuple[str, list[Any]]:
    """``template`` with each NOW and CUTOFF replaced by its SQL in ``marks``, and the
    parameters of those, in the order they appear."""
    parts: list[str] = []
    params: list[Any] = []
    for index, part in enumerate(re.split(r"\b(NOW|CUTOFF)\b", template)):
        if index % 2:  # a mark
            sql, values = marks[part]
            parts.append(sql)
            params.extend(values)
        else:
            parts.append(part)
    return "".join(parts), params


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what} must be a non-empty string, got {value!r}")
    return value


class Coordinating(Runs):
    """The coordination role, written once in SQL."""

    def _lock_queue(self, db: Session) -> None:
        """Serialise queue inserts across processes until the transaction ends (PostgreSQL
        takes an advisory lock; SQLite's BEGIN IMMEDIATE already holds the write lock)."""

    # --- new runs -----------------------------------------------------------------------------

    def create_run(
        self,
        run_id: str | None,
        pipeline_name: str,
        *,
        owner_id: str,
        started_by: str,
        status: RunStatus | str = RunStatus.QUEUED,
        variables: Mapping[str, Any] | None = None,
        scheduler_name: str | None = None,
        trigger_name: str | None = None,
        scheduled_time: datetime | None = None,
        definition: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        executor: str | None = None,
        max_queued: int | None = None,
        logical_time: LogicalTime | None = None,
    ) -> RunRecord:
        first = RunStatus(status)
        if first not in (RunStatus.QUEUED, RunStatus.RUNNING):
            raise ValidationError(
                f"create_run: a run is created queued or running, not {first.value!r}"
            )
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise ValidationError(
                f"create_run: timeout must be a number of seconds above 0, got {timeout!r}"
            )
        now = self._time_in(self._now())
        params = (
            run_id or uuid.uuid4().hex,
            pipeline_name,
            first.value,
            now,
            None,
            scheduler_name,
            trigger_name,
            self._time_in_opt(scheduled_time, "scheduled_time"),
            variables_json(variables),
            None,
            _text(owner_id, "create_run: owner_id"),
            _text(started_by, "create_run: started_by"),
            now if first is RunStatus.QUEUED else None,
            None if first is RunStatus.QUEUED else now,  # a queued run waits to be claimed
            None if definition is None else dump_json(definition, "the run's definition"),
            timeout,
            executor,
            1,
            *self._interval(logical_time),
        )
        try:
            with self._session() as db:
                if first is RunStatus.QUEUED and max_queued is not None:
                    self._lock_queue(db)
                    queued = db.one("SELECT COUNT(*) FROM {runs} WHERE status = 'queued'")[0]
                    if queued >= max_queued:
                        raise QueueFullError(
                            f"the run queue is full: {queued} runs are waiting for a slot and "
                            f"TH2ETL_MAX_QUEUED_RUNS is {max_queued}; retry later, cancel "
                            "queued runs, or raise the limit",
                            max_queued,
                        )
                row = db.one(INSERT_RUN + f"RETURNING {RUN}", params)
        except Conflict:
            raise ValidationError(
                f"create_run: run id {run_id!r} is already used by another run; pass a new "
                "one (uuid.uuid4().hex) or None"
            ) from None
        return self._run_record(row, log="")

    def claim_queued_run(self, owner_id: str) -> RunRecord | None:
        owner = _text(owner_id, "claim_queued_run: owner_id")
        with self._session() as db:
            row = db.one(
                "SELECT run_id FROM {runs} WHERE status = 'queued' AND claimed_at IS NULL "
                "ORDER BY queued_at, run_id LIMIT 1{skip_locked}"
            )
            if row is None:
                return None
            claimed = db.one(
                f"UPDATE {{runs}} SET owner_id = %s, claimed_at = %s WHERE run_id = %s "
                f"AND status = 'queued' AND claimed_at IS NULL RETURNING {RUN}, definition",
                (owner, self._time_in(self._now()), row[0]),
            )
            if claimed is None:
                return None
            return self._run_record(claimed, definition=claimed[-1])

    def mark_running(self, run_id: str, *, worker: str | None = None) -> bool:
        row = self._one(
            "UPDATE {runs} SET status = 'running', worker = COALESCE(worker, %s), "
            "started_at = CASE WHEN status = 'queued' THEN %s ELSE started_at END "
            f"WHERE run_id = %s AND status IN ({ACTIVE}) RETURNING run_id",
            (worker, self._time_in(self._now()), run_id),
        )
        if row is not None:
            return True
        self.get_run(run_id)  # NotFoundError for an unknown run
        return False

    def claim_execution(self, run_id: str, worker: str) -> bool:
        row = self._one(
            "UPDATE {runs} SET status = 'running', worker = %s, "
            "started_at = CASE WHEN status = 'queued' THEN %s ELSE started_at END "
            f"WHERE run_id = %s AND status IN ({ACTIVE}) AND worker IS NULL RETURNING run_id",
            (_text(worker, "claim_execution: worker"), self._time_in(self._now()), run_id),
        )
        if row is not None:
            return True
        self.get_run(run_id)  # NotFoundError for an unknown run
        return False

    # --- scheduler ticks ----------------------------------------------------------------------

    def _tick_params(
        self,
        status: RunStatus,
        scheduler_name: str,
        scheduled_time: datetime,
        pipeline_name: str,
        trigger_name: str | None,
        instance_id: str | None,
        now: datetime,
        *,
        error: str | None = None,
        variables: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        started_by: str | None = None,
        attempt: int = 1,
        logical_time: LogicalTime | None = None,
        definition: Mapping[str, Any] | None = None,
        executor: str | None = None,
    ) -> tuple[Any, ...]:
        """The values of :data:`INSERT_RUN` for a tick of ``scheduler_name``."""
        at = self._time_in(aware(now, "now"))
        queued = status is RunStatus.QUEUED
        return (
            run_id or uuid.uuid4().hex,
            pipeline_name,
            status.value,
            at,
            None if queued else at,
            scheduler_name,
            trigger_name,
            self._time_in(aware(scheduled_time, "scheduled_time")),
            variables_json(variables),
            error,
            instance_id,
            started_by or f"scheduler:{scheduler_name}",
            at if queued else None,
            at,  # claimed by its scheduler: never in the shared queue
            None if definition is None else dump_json(definition, "the run's definition"),
            None,
            executor,
            attempt,
            *self._interval(logical_time),
        )

    def _tick(
        self,
        status: RunStatus,
        scheduler_name: str,
        scheduled_time: datetime,
        pipeline_name: str,
        trigger_name: str | None,
        instance_id: str | None,
        now: datetime,
        error: str | None = None,
        variables: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        logical_time: LogicalTime | None = None,
        executor: str | None = None,
    ) -> RunRecord | None:
        params = self._tick_params(
            status,
            scheduler_name,
            scheduled_time,
            pipeline_name,
            trigger_name,
            instance_id,
            now,
            error=error,
            variables=variables,
            run_id=run_id,
            logical_time=logical_time,
            executor=executor,
        )
        try:
            row = self._one(_TICK, params)
        except Conflict:  # the run id is another run's primary key
            raise ValidationError(
                f"claim_run: run id {run_id!r} is already used by another run; pass the id "
                "of this tick's earlier claim, a new one (uuid.uuid4().hex) or None"
            ) from None
        return None if row is None else self._run_record(row, log="")

    def claim_run(
        self,
        scheduler_name: str,
        scheduled_time: datetime,
        *,
        pipeline_name: str,
        trigger_name: str | None,
        instance_id: str | None,
        now: datetime,
        variables: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        logical_time: LogicalTime | None = None,
        executor: str | None = None,
    ) -> RunRecord | None:
        return self._tick(
            RunStatus.QUEUED,
            scheduler_name,
            scheduled_time,
            pipeline_name,
            trigger_name,
            instance_id,
            now,
            variables=variables,
            run_id=run_id,
            logical_time=logical_time,
            executor=executor,
        )

    def record_skipped_run(
        self,
        scheduler_name: str,
        scheduled_time: datetime,
        reason: str,
        *,
        pipeline_name: str,
        trigger_name: str | None,
        instance_id: str | None,
        now: datetime,
    ) -> RunRecord | None:
        return self._tick(
            RunStatus.SKIPPED,
            scheduler_name,
            scheduled_time,
            pipeline_name,
            trigger_name,
            instance_id,
            now,
            error=reason,
        )

    def latest_scheduled_time(self, scheduler_name: str) -> datetime | None:
        # A tick whose run was pruned (th2etl_ticks) still counts.
        row = self._one(
            "SELECT MAX(t) FROM (SELECT MAX(scheduled_time) AS t FROM {runs} "
            "WHERE scheduler_name = %s UNION ALL SELECT MAX(scheduled_time) FROM {ticks} "
            "WHERE scheduler_name = %s) AS latest",
            (scheduler_name, scheduler_name),
        )
        return self._time_out_opt(row[0])

    def active_runs(self, scheduler_name: str | None = None) -> list[RunRecord]:
        where, params = "", []
        if scheduler_name is not None:
            where, params = " AND scheduler_name = %s", [scheduler_name]
        with self._session(write=False) as db:
            rows = db.all(
                f"SELECT {RUN} FROM {{runs}} WHERE status IN ({ACTIVE}){where} "
                "ORDER BY started_at, run_id",
                params,
            )
            return self._with_blocs(db, [self._run_record(row) for row in rows])

    def count_active_runs(
        self,
        *,
        pipeline_name: str | None = None,
        status: RunStatus | str | None = None,
        manual: bool | None = None,
    ) -> int:
        wanted = None if status is None else RunStatus(status)
        if wanted is not None and wanted in TERMINAL_STATUSES:
            raise ValidationError(
                f"count_active_runs: {wanted.value!r} is not an active status; use queued or "
                "running, or None for both"
            )
        conditions, params = [f"status IN ({ACTIVE})"], []
        if pipeline_name is not None:
            conditions.append("pipeline_name = %s")
            params.append(pipeline_name)
        if wanted is not None:
            conditions.append("status = %s")
            params.append(wanted.value)
        if manual is not None:
            conditions.append(f"scheduler_name IS {'' if manual else 'NOT '}NULL")
        row = self._one(f"SELECT COUNT(*) FROM {{runs}} WHERE {' AND '.join(conditions)}", params)
        return int(row[0])

    # --- instances and liveness ---------------------------------------------------------------

    def database_now(self) -> datetime:
        return self._time_out(self._one("SELECT {db_now}")[0])

    def heartbeat(
        self,
        instance_id: str,
        now: datetime | None = None,
        *,
        hostname: str | None = None,
        pid: int | None = None,
        info: Mapping[str, Any] | None = None,
        lease: timedelta | None = None,
    ) -> None:
        if lease is not None and (not isinstance(lease, timedelta) or lease <= timedelta(0)):
            raise ValidationError(
                f"heartbeat: lease must be a positive timedelta (how long instance "
                f"{instance_id!r} counts as alive after this heartbeat) or None, got {lease!r}"
            )
        at = "{db_now}" if now is None else "%s"
        times: tuple[Any, ...] = ()
        until: tuple[Any, ...] = ()
        if now is None:
            ends = "NULL" if lease is None else "{db_later}"
            if lease is not None:
                until = (lease.total_seconds(),)
        else:
            stamp = aware(now, "now")
            times = (self._time_in(stamp),) * 2
            ends = "%s"
            until = (None if lease is None else self._time_in(stamp + lease),)
        self._run(
            f"INSERT INTO {{instances}} AS i ({_INSTANCE}) "
            f"VALUES (%s, {at}, {at}, %s, %s, %s, {ends}) "
            "ON CONFLICT (instance_id) DO UPDATE SET last_seen = excluded.last_seen, "
            "hostname = COALESCE(excluded.hostname, i.hostname), "
            "pid = COALESCE(excluded.pid, i.pid), info = excluded.info, "
            "lease_until = excluded.lease_until",
            (instance_id, *times, hostname, pid, variables_json(info), *until),
        )

    def list_instances(self, *, seen_since: datetime | None = None) -> list[InstanceRecord]:
        if seen_since is None:
            rows = self._all(f"SELECT {_INSTANCE} FROM {{instances}} ORDER BY instance_id")
        else:
            rows = self._all(
                f"SELECT {_INSTANCE} FROM {{instances}} WHERE last_seen >= %s ORDER BY instance_id",
                (self._time_in(aware(seen_since, "seen_since")),),
            )
        return [
            InstanceRecord(
                row[0],
                self._time_out(row[1]),
                self._time_out(row[2]),
                row[3],
                row[4],
                self._json_out(row[5]),
                self._time_out_opt(row[6]),
            )
            for row in rows
        ]

    def remove_instance(self, instance_id: str) -> None:
        self._run("DELETE FROM {instances} WHERE instance_id = %s", (instance_id,))

    def mark_abandoned_runs(self, now: datetime | None, stale_after: timedelta) -> list[str]:
        if not isinstance(stale_after, timedelta) or stale_after <= timedelta(0):
            raise ValidationError(
                f"mark_abandoned_runs: stale_after must be a positive timedelta, "
                f"got {stale_after!r}"
            )
        fallback = stale_after.total_seconds()
        stamp = self._now() if now is None else aware(now, "now")
        if now is None:
            clock = "the database's clock"
            marks: dict[str, tuple[str, tuple[Any, ...]]] = {
                "NOW": ("{db_now}", ()),
                "CUTOFF": ("{db_ago}", (fallback,)),
            }
        else:
            clock = stamp.isoformat()
            marks = {
                "NOW": ("%s", (self._time_in(stamp),)),
                "CUTOFF": ("%s", (self._time_in(stamp - stale_after),)),
            }

        checked = f"by {clock}, checked at {stamp.isoformat()}"
        select, params = _clocked(_STALE_OWNERS, marks)
        marked: list[str] = []
        for owner, instance, last_seen, lease_until in self._all(select, params):
            if instance is None:
                template = _ABANDON_UNKNOWN
                why = f"owner {owner} has no instance row; {checked}"
                lease = fallback
            elif lease_until is None:
                template = _ABANDON_STALE
                why = (
                    f"owner {owner} records no lease of its own, so the sweeping process's "
                    f"stale_after was used; {checked}"
                )
                lease = fallback
            else:
                template = _ABANDON_STALE
                seen, until = self._time_out(last_seen), self._time_out(lease_until)
                lease = round((until - seen).total_seconds(), 3)
                why = (
                    f"the lease of owner {owner}, renewed at each heartbeat, ended at "
                    f"{until.isoformat()}; {checked}"
                )
            reason = f"abandoned: its owner sent no heartbeat for {lease:g}s ({why})"
            statement, clock_params = _clocked(template, marks)
            # _ABANDON's own parameters come first, the clock's after them.
            rows = self._all(
                statement,
                (
                    self._time_in(stamp),
                    reason,
                    f"{stamp.isoformat()} {reason}\n",
                    owner,
                    *clock_params,
                ),
            )
            marked.extend(row[0] for row in rows)
        return sorted(marked)

    # --- cancel -------------------------------------------------------------------------------

    def request_cancel(self, run_id: str, *, by: str | None = None) -> RunRecord:
        now = self._time_in(self._now())
        with self._session() as db:
            row = db.one("SELECT status FROM {runs} WHERE run_id = %s{for_update}", (run_id,))
            if row is None:
                raise run_missing(run_id)
            status = RunStatus(row[0])
            if status in TERMINAL_STATUSES:
                raise RunFinishedError(
                    f"run {run_id} already finished ({status.value}); there is nothing to cancel",
                    status.value,
                )
            if status is RunStatus.QUEUED:  # it never started: nothing has to stop
                who = f" by {by}" if by else ""
                updated = db.one(
                    "UPDATE {runs} SET status = 'cancelled', finished_at = %s, error = %s, "
                    "cancel_requested = %s, cancel_requested_at = %s, cancelled_by = %s "
                    f"WHERE run_id = %s RETURNING {RUN}",
                    (now, f"cancelled{who} before it started", True, now, by, run_id),
                )
            else:
                updated = db.one(
                    "UPDATE {runs} SET cancel_requested = %s, "
                    "cancel_requested_at = COALESCE(cancel_requested_at, %s), "
                    f"cancelled_by = COALESCE(cancelled_by, %s) WHERE run_id = %s RETURNING {RUN}",
                    (True, now, by, run_id),
                )
            return self._run_record(updated)

    def cancel_requested(self, run_id: str) -> bool:
        row = self._one("SELECT cancel_requested FROM {runs} WHERE run_id = %s", (run_id,))
        if row is None:
            raise run_missing(run_id)
        return bool(row[0])

    def runs_to_cancel(self, owner_id: str) -> list[str]:
        rows = self._all(
            f"SELECT run_id FROM {{runs}} WHERE owner_id = %s AND status IN ({ACTIVE}) "
            "AND cancel_requested = %s ORDER BY run_id",
            (owner_id, True),
        )
        return [row[0] for row in rows]
