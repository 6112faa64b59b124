"""Run history and scheduler coordination: the other half of the SQL storage."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from th2etl.exceptions import NotFoundError, ValidationError
from th2etl.pipelines.result import ACTIVE_STATUSES, BlocResult, BlocStatus, RunStatus
from th2etl.storage._core import Conflict, Session, SqlCore, aware
from th2etl.storage.records import BlocRunRecord, InstanceRecord, RunRecord

__all__ = ["Runs"]

_RUN = (
    "run_id, pipeline_name, status, started_at, finished_at, scheduler_name, trigger_name, "
    "scheduled_time, variables, error, instance_id, cancel_requested"
)
_BLOC_RUN = (
    "run_id, bloc_name, bloc_type, stage, status, attempts, rows_in, rows_out, duration, "
    "started_at, finished_at, error_type, error_message, error_traceback"
)
_RECORD_BLOC_RUN = (
    f"INSERT INTO {{bloc_runs}} ({_BLOC_RUN}, position) "
    f"VALUES ({', '.join(['%s'] * 15)}) ON CONFLICT (run_id, bloc_name) DO UPDATE "
    f"SET {', '.join(f'{c} = excluded.{c}' for c in _BLOC_RUN.split(', ')[2:])}, "
    "position = excluded.position"
)
_INSTANCE = "instance_id, started_at, last_seen, hostname, pid, info"
_TICK = (
    "INSERT INTO {runs} AS r (run_id, pipeline_name, status, started_at, finished_at, "
    "scheduler_name, trigger_name, scheduled_time, variables, error, instance_id) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    # The unique (scheduler_name, scheduled_time) constraint decides who gets the tick. The
    # no-op update returns the row only to a retry of the claim that made it (same run id),
    # while it is still running: an answer lost after COMMIT is not a lost tick.
    "ON CONFLICT (scheduler_name, scheduled_time) DO UPDATE SET status = r.status "
    f"WHERE r.run_id = excluded.run_id AND r.status = 'running' RETURNING {_RUN}"
)
MAX_LIMIT = 10_000
# A fixed fragment made of the enum's own values, never of input.
_ACTIVE = ", ".join(f"'{status.value}'" for status in sorted(ACTIVE_STATUSES))


def _variables(variables: Mapping[str, Any] | None) -> str:
    # Run variables may hold anything (dates, paths): stored as their str() if not JSON.
    return json.dumps(dict(variables or {}), default=str, ensure_ascii=False)


def _status(value: RunStatus | str) -> RunStatus:
    try:
        return RunStatus(value)
    except ValueError:
        allowed = ", ".join(status.value for status in RunStatus)
        raise ValidationError(f"unknown run status {value!r}; use one of {allowed}") from None


def _run_missing(run_id: str) -> NotFoundError:
    return NotFoundError(f"run {run_id!r} does not exist; list_runs() shows the stored runs")


class Runs(SqlCore):
    """Run history and coordination (:mod:`th2etl.storage.run_history`,
    :mod:`th2etl.storage.coordination`), written once in SQL."""

    def _run_record(self, row: Sequence[Any], log: str | None = None) -> RunRecord:
        return RunRecord(
            run_id=row[0],
            pipeline_name=row[1],
            status=RunStatus(row[2]),
            started_at=self._time_out(row[3]),
            finished_at=self._time_out_opt(row[4]),
            scheduler_name=row[5],
            trigger_name=row[6],
            scheduled_time=self._time_out_opt(row[7]),
            variables=self._json_out(row[8]),
            error=row[9],
            instance_id=row[10],
            cancel_requested=bool(row[11]),
            log=log,
        )

    def _bloc_run_record(self, row: Sequence[Any]) -> BlocRunRecord:
        return BlocRunRecord(
            run_id=row[0],
            bloc_name=row[1],
            bloc_type=row[2],
            stage=row[3],
            status=BlocStatus(row[4]),
            attempts=row[5],
            rows_in=row[6],
            rows_out=row[7],
            duration=row[8],
            started_at=self._time_out_opt(row[9]),
            finished_at=self._time_out_opt(row[10]),
            error_type=row[11],
            error_message=row[12],
            error_traceback=row[13],
        )

    def _with_blocs(self, db: Session, runs: list[RunRecord]) -> list[RunRecord]:
        """The runs with their bloc runs, read in one query."""
        if not runs:
            return runs
        ids = [run.run_id for run in runs]
        rows = db.all(
            f"SELECT {_BLOC_RUN} FROM {{bloc_runs}} WHERE run_id IN "
            f"({', '.join(['%s'] * len(ids))}) ORDER BY run_id, position",
            ids,
        )
        blocs: dict[str, list[BlocRunRecord]] = {}
        for row in rows:
            blocs.setdefault(row[0], []).append(self._bloc_run_record(row))
        for run in runs:
            run.blocs.extend(blocs.get(run.run_id, []))
        return runs

    # --- recording a run --------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        pipeline_name: str,
        *,
        started_at: datetime,
        scheduler_name: str | None = None,
        trigger_name: str | None = None,
        scheduled_time: datetime | None = None,
        variables: Mapping[str, Any] | None = None,
        instance_id: str | None = None,
    ) -> RunRecord:
        params = (
            run_id,
            pipeline_name,
            RunStatus.RUNNING.value,
            self._time_in(aware(started_at, "started_at")),
            scheduler_name,
            trigger_name,
            self._time_in_opt(scheduled_time, "scheduled_time"),
            _variables(variables),
            instance_id,
        )
        row = self._one(
            "INSERT INTO {runs} AS r (run_id, pipeline_name, status, started_at, "
            "scheduler_name, trigger_name, scheduled_time, variables, instance_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            # A claimed tick already has its row: adopt it.
            "ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, "
            "started_at = excluded.started_at, variables = excluded.variables, "
            "scheduler_name = COALESCE(excluded.scheduler_name, r.scheduler_name), "
            "trigger_name = COALESCE(excluded.trigger_name, r.trigger_name), "
            "scheduled_time = COALESCE(excluded.scheduled_time, r.scheduled_time), "
            "instance_id = COALESCE(excluded.instance_id, r.instance_id) "
            f"RETURNING {_RUN}",
            params,
        )
        return self._run_record(row)

    def record_bloc_run(self, run_id: str, result: BlocResult, position: int = 0) -> None:
        self._run(
            _RECORD_BLOC_RUN,
            (
                run_id,
                result.name,
                result.bloc_type,
                result.stage,
                BlocStatus(result.status).value,
                result.attempts,
                result.rows_in,
                result.rows_out,
                result.duration,
                self._time_in_opt(result.started_at, "started_at"),
                self._time_in_opt(result.finished_at, "finished_at"),
                result.error_type,
                result.error_message,
                result.error_traceback,
                position,
            ),
        )

    def finish_run(
        self,
        run_id: str,
        status: RunStatus | str,
        *,
        finished_at: datetime,
        error: str | None,
        started_at: datetime | None = None,
    ) -> None:
        final = _status(status)
        changed = self._run(
            "UPDATE {runs} SET status = %s, finished_at = %s, error = %s, "
            "started_at = COALESCE(%s, started_at) WHERE run_id = %s",
            (
                final.value,
                self._time_in(aware(finished_at, "finished_at")),
                error,
                self._time_in_opt(started_at, "started_at"),
                run_id,
            ),
        )
        if changed == 0:
            raise _run_missing(run_id)

    def append_run_log(self, run_id: str, text: str) -> None:
        changed = self._run(
            "UPDATE {runs} SET log = log || %s WHERE run_id = %s", (str(text), run_id)
        )
        if changed == 0:
            raise _run_missing(run_id)

    # --- reading runs -----------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord:
        with self._session(write=False) as db:
            row = db.one(f"SELECT {_RUN}, log FROM {{runs}} WHERE run_id = %s", (run_id,))
            if row is None:
                raise _run_missing(run_id)
            return self._with_blocs(db, [self._run_record(row, log=row[12])])[0]

    def list_runs(
        self,
        *,
        pipeline_name: str | None = None,
        scheduler_name: str | None = None,
        status: RunStatus | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValidationError(
                f"list_runs: limit must be a whole number from 1 to {MAX_LIMIT}, got {limit!r}"
            )
        conditions: list[str] = []
        params: list[Any] = []
        for column, value in (("pipeline_name", pipeline_name), ("scheduler_name", scheduler_name)):
            if value is not None:
                conditions.append(f"{column} = %s")
                params.append(value)
        if status is not None:
            conditions.append("status = %s")
            params.append(_status(status).value)
        if since is not None:
            conditions.append("started_at >= %s")
            params.append(self._time_in(aware(since, "list_runs: since")))
        if until is not None:
            conditions.append("started_at < %s")
            params.append(self._time_in(aware(until, "list_runs: until")))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._session(write=False) as db:
            rows = db.all(
                f"SELECT {_RUN} FROM {{runs}}{where} "
                "ORDER BY started_at DESC, run_id DESC LIMIT %s",
                [*params, limit],
            )
            return self._with_blocs(db, [self._run_record(row) for row in rows])

    # --- scheduler coordination -------------------------------------------------------------

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
    ) -> RunRecord | None:
        at = self._time_in(aware(now, "now"))
        params = (
            run_id or uuid.uuid4().hex,
            pipeline_name,
            status.value,
            at,
            None if status is RunStatus.RUNNING else at,
            scheduler_name,
            trigger_name,
            self._time_in(aware(scheduled_time, "scheduled_time")),
            _variables(variables),
            error,
            instance_id,
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
    ) -> RunRecord | None:
        return self._tick(
            RunStatus.RUNNING,
            scheduler_name,
            scheduled_time,
            pipeline_name,
            trigger_name,
            instance_id,
            now,
            variables=variables,
            run_id=run_id,
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
                f"SELECT {_RUN} FROM {{runs}} WHERE status IN ({_ACTIVE}){where} "
                "ORDER BY started_at, run_id",
                params,
            )
            return self._with_blocs(db, [self._run_record(row) for row in rows])

    def heartbeat(
        self,
        instance_id: str,
        now: datetime,
        *,
        hostname: str | None = None,
        pid: int | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        at = self._time_in(aware(now, "now"))
        self._run(
            f"INSERT INTO {{instances}} AS i ({_INSTANCE}) VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (instance_id) DO UPDATE SET last_seen = excluded.last_seen, "
            "hostname = COALESCE(excluded.hostname, i.hostname), "
            "pid = COALESCE(excluded.pid, i.pid), info = excluded.info",
            (instance_id, at, at, hostname, pid, _variables(info)),
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
            )
            for row in rows
        ]

    def remove_instance(self, instance_id: str) -> None:
        self._run("DELETE FROM {instances} WHERE instance_id = %s", (instance_id,))

    def mark_abandoned_runs(self, now: datetime, stale_after: timedelta) -> list[str]:
        if not isinstance(stale_after, timedelta) or stale_after <= timedelta(0):
            raise ValidationError(
                f"mark_abandoned_runs: stale_after must be a positive timedelta, "
                f"got {stale_after!r}"
            )
        now = aware(now, "now")
        at = self._time_in(now)
        cutoff = self._time_in(now - stale_after)
        reason = (
            f"abandoned: its instance sent no heartbeat for {stale_after.total_seconds():g}s "
            f"(checked at {now.isoformat()})"
        )
        rows = self._all(
            "UPDATE {runs} AS r SET status = 'abandoned', finished_at = %s, error = %s, "
            "log = log || %s WHERE r.status = 'running' AND r.instance_id IS NOT NULL AND ("
            "EXISTS (SELECT 1 FROM {instances} AS i "
            "WHERE i.instance_id = r.instance_id AND i.last_seen < %s) "
            "OR (r.started_at < %s AND NOT EXISTS (SELECT 1 FROM {instances} AS i "
            "WHERE i.instance_id = r.instance_id))) RETURNING run_id",
            (at, reason, f"{now.isoformat()} {reason}\n", cutoff, cutoff),
        )
        return sorted(row[0] for row in rows)

    def request_cancel(self, run_id: str) -> bool:
        with self._session() as db:
            row = db.one("SELECT status FROM {runs} WHERE run_id = %s{for_update}", (run_id,))
            if row is None:
                raise _run_missing(run_id)
            if row[0] != RunStatus.RUNNING.value:
                return False
            db.run("UPDATE {runs} SET cancel_requested = %s WHERE run_id = %s", (True, run_id))
            return True

    def cancel_requested(self, run_id: str) -> bool:
        row = self._one("SELECT cancel_requested FROM {runs} WHERE run_id = %s", (run_id,))
        if row is None:
            raise _run_missing(run_id)
        return bool(row[0])
