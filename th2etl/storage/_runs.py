"""Run history in SQL: recording runs and reading them (:mod:`th2etl.storage.run_history`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from th2etl.exceptions import NotFoundError, RunFinishedError, RunStatusError, ValidationError
from th2etl.logical_time import LogicalTime
from th2etl.pipelines.result import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    TRANSITIONS,
    BlocResult,
    BlocStatus,
    RunStatus,
)
from th2etl.storage._core import Session, SqlCore, aware, dump_json
from th2etl.storage.records import BlocRunRecord, RunRecord

__all__ = ["ACTIVE", "MAX_LIMIT", "RUN", "Runs", "run_missing", "variables_json"]

logger = logging.getLogger("th2etl.storage")

RUN = (
    "run_id, pipeline_name, status, started_at, finished_at, scheduler_name, trigger_name, "
    "scheduled_time, variables, error, owner_id, cancel_requested, started_by, cancelled_by, "
    "cancel_requested_at, queued_at, claimed_at, timeout, executor, worker, attempt, "
    "interval_start, interval_end, logical_timezone"
)
_RUN_COLUMNS = len(RUN.split(", "))
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
MAX_LIMIT = 10_000
# Fixed fragments made of the enum's own values, never of input.
ACTIVE = ", ".join(f"'{status.value}'" for status in sorted(ACTIVE_STATUSES))


def _sources(status: RunStatus) -> str:
    return ", ".join(f"'{s.value}'" for s in sorted(RunStatus) if status in TRANSITIONS[s])


_FINISH = {
    status: (
        "UPDATE {runs} SET status = %s, finished_at = %s, error = %s, "
        "started_at = COALESCE(%s, started_at) "
        f"WHERE run_id = %s AND status IN ({_sources(status)})"
    )
    for status in TERMINAL_STATUSES
}


def variables_json(variables: Mapping[str, Any] | None) -> str:
    # Run variables may hold anything (dates, paths): stored as their str() if not JSON.
    return json.dumps(dict(variables or {}), default=str, ensure_ascii=False)


def _status(value: RunStatus | str) -> RunStatus:
    try:
        return RunStatus(value)
    except ValueError:
        allowed = ", ".join(status.value for status in RunStatus)
        raise ValidationError(f"unknown run status {value!r}; use one of {allowed}") from None


def run_missing(run_id: str) -> NotFoundError:
    return NotFoundError(f"run {run_id!r} does not exist; list_runs() shows the stored runs")


def illegal(run_id: str, current: RunStatus, wanted: RunStatus) -> RunStatusError:
    """The state machine's refusal of ``current`` -> ``wanted``, with what is allowed."""
    allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (it has ended)"
    error = (
        f"run {run_id} is {current.value}; it cannot become {wanted.value} "
        f"(a {current.value} run may become: {allowed})"
    )
    if current in TERMINAL_STATUSES:
        return RunFinishedError(error, current.value)
    return RunStatusError(error)


class Runs(SqlCore):
    """Run history and coordination (:mod:`th2etl.storage.run_history`,
    :mod:`th2etl.storage.coordination`), written once in SQL."""

    def _run_record(
        self, row: Sequence[Any], log: str | None = None, definition: Any = None
    ) -> RunRecord:
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
            owner_id=row[10],
            cancel_requested=bool(row[11]),
            started_by=row[12],
            cancelled_by=row[13],
            cancel_requested_at=self._time_out_opt(row[14]),
            queued_at=self._time_out_opt(row[15]),
            claimed_at=self._time_out_opt(row[16]),
            timeout=row[17],
            executor=row[18],
            worker=row[19],
            definition=None if definition is None else self._json_out(definition),
            log=log,
            attempt=row[20],
            logical_time=self._logical_time(row),
        )

    def _logical_time(self, row: Sequence[Any]) -> LogicalTime | None:
        if row[21] is None or row[22] is None:
            return None
        end = self._time_out(row[22])
        # A manual run has no scheduled time: it is for the end of its (empty) interval.
        scheduled = end if row[7] is None else self._time_out(row[7])
        return LogicalTime(scheduled, self._time_out(row[21]), end, row[23])

    def _interval(self, logical_time: LogicalTime | None) -> tuple[Any, Any, str | None]:
        """The interval columns of ``logical_time`` (or NULLs)."""
        if logical_time is None:
            return None, None, None
        return (
            self._time_in(logical_time.interval_start),
            self._time_in(logical_time.interval_end),
            logical_time.timezone,
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
            f"SELECT {_BLOC_RUN} FROM {{bloc_runs}} WHERE run_id {{in_list}} "
            "ORDER BY run_id, position",
            (self._list_param(ids),),
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
        started_by: str | None = None,
        definition: Mapping[str, Any] | None = None,
        logical_time: LogicalTime | None = None,
    ) -> RunRecord:
        params = (
            run_id,
            pipeline_name,
            RunStatus.RUNNING.value,
            self._time_in(aware(started_at, "started_at")),
            scheduler_name,
            trigger_name,
            self._time_in_opt(scheduled_time, "scheduled_time"),
            variables_json(variables),
            instance_id,
            started_by,
            None if definition is None else dump_json(definition, "the run's definition"),
            *self._interval(logical_time),
        )
        row = self._one(
            "INSERT INTO {runs} AS r (run_id, pipeline_name, status, started_at, "
            "scheduler_name, trigger_name, scheduled_time, variables, owner_id, started_by, "
            "definition, interval_start, interval_end, logical_timezone) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            # A recorded (queued or running) run already has its row: adopt it. A finished
            # one is left as it is (the state machine would refuse it anyway).
            "ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, "
            "started_at = excluded.started_at, variables = excluded.variables, "
            "scheduler_name = COALESCE(excluded.scheduler_name, r.scheduler_name), "
            "trigger_name = COALESCE(excluded.trigger_name, r.trigger_name), "
            "scheduled_time = COALESCE(excluded.scheduled_time, r.scheduled_time), "
            "owner_id = COALESCE(excluded.owner_id, r.owner_id), "
            "started_by = COALESCE(r.started_by, excluded.started_by), "
            "definition = COALESCE(excluded.definition, r.definition), "
            # A claimed tick keeps the data interval it was claimed with.
            "interval_start = COALESCE(r.interval_start, excluded.interval_start), "
            "interval_end = COALESCE(r.interval_end, excluded.interval_end), "
            "logical_timezone = COALESCE(r.logical_timezone, excluded.logical_timezone) "
            f"WHERE r.status IN ({ACTIVE}) RETURNING {RUN}",
            params,
        )
        if row is None:
            raise illegal(run_id, self.get_run(run_id).status, RunStatus.RUNNING)
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
    ) -> bool:
        final = _status(status)
        if final not in TERMINAL_STATUSES:
            raise ValidationError(
                f"finish_run: {final.value!r} is not a final status; use one of "
                f"{', '.join(sorted(TERMINAL_STATUSES))}"
            )
        changed = self._run(
            _FINISH[final],
            (
                final.value,
                self._time_in(aware(finished_at, "finished_at")),
                error,
                self._time_in_opt(started_at, "started_at"),
                run_id,
            ),
        )
        if changed:
            return True
        current = self.get_run(run_id).status  # NotFoundError for an unknown run
        if current in TERMINAL_STATUSES:
            logger.warning(
                "run %s ended %s already; its outcome %s is not recorded",
                run_id,
                current.value,
                final.value,
            )
            return False
        raise illegal(run_id, current, final)

    def append_run_log(self, run_id: str, text: str) -> None:
        changed = self._run(
            "UPDATE {runs} SET log = log || %s WHERE run_id = %s", (str(text), run_id)
        )
        if changed == 0:
            raise run_missing(run_id)

    # --- reading runs -----------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord:
        with self._session(write=False) as db:
            row = db.one(
                f"SELECT {RUN}, definition, log FROM {{runs}} WHERE run_id = %s", (run_id,)
            )
            if row is None:
                raise run_missing(run_id)
            record = self._run_record(row, log=row[_RUN_COLUMNS + 1], definition=row[_RUN_COLUMNS])
            return self._with_blocs(db, [record])[0]

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
                f"SELECT {RUN} FROM {{runs}}{where} ORDER BY started_at DESC, run_id DESC LIMIT %s",
                [*params, limit],
            )
            return self._with_blocs(db, [self._run_record(row) for row in rows])
