"""Attempts of a tick and the successes dependencies wait for: coordination in SQL.

A tick is keyed by (scheduler, scheduled time, attempt). The scheduler claims attempt 1
(:meth:`~th2etl.storage.coordination.Coordination.claim_run`); a backfill or a dependency claims
the next attempt through :meth:`Ticks.claim_tick`, under the same unique key, so two processes
backfilling one range run each tick once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from th2etl.logical_time import LogicalTime
from th2etl.pipelines.result import RunStatus
from th2etl.storage._coordination import INSERT_RUN, Coordinating
from th2etl.storage._core import aware
from th2etl.storage._runs import RUN
from th2etl.storage.records import RunRecord

__all__ = ["Ticks"]


class Ticks(Coordinating):
    """:meth:`claim_tick`, :meth:`tick_records` and :meth:`succeeded_ticks` of
    :class:`~th2etl.storage.coordination.Coordination`."""

    def claim_tick(
        self,
        scheduler_name: str,
        scheduled_time: datetime,
        *,
        pipeline_name: str,
        trigger_name: str | None,
        instance_id: str | None,
        now: datetime,
        rerun: Collection[RunStatus] = (RunStatus.SKIPPED,),
        variables: Mapping[str, Any] | None = None,
        logical_time: LogicalTime | None = None,
        started_by: str | None = None,
        definition: Mapping[str, Any] | None = None,
        executor: str | None = None,
    ) -> RunRecord | None:
        tick = self._time_in(aware(scheduled_time, "scheduled_time"))
        allowed = {RunStatus(status).value for status in rerun}
        with self._session() as db:
            latest = db.one(
                "SELECT attempt, status FROM {runs} WHERE scheduler_name = %s AND "
                "scheduled_time = %s ORDER BY attempt DESC LIMIT 1",
                (scheduler_name, tick),
            )
            if latest is not None and latest[1] not in allowed:
                return None
            params = self._tick_params(
                RunStatus.QUEUED,
                scheduler_name,
                scheduled_time,
                pipeline_name,
                trigger_name,
                instance_id,
                now,
                variables=variables,
                started_by=started_by,
                attempt=1 if latest is None else int(latest[0]) + 1,
                logical_time=logical_time,
                definition=definition,
                executor=executor,
            )
            row = db.one(
                INSERT_RUN + "ON CONFLICT (scheduler_name, scheduled_time, attempt) DO NOTHING "
                f"RETURNING {RUN}",
                params,
            )
        return None if row is None else self._run_record(row, log="")

    def tick_records(
        self, scheduler_name: str, start: datetime, end: datetime
    ) -> dict[datetime, RunRecord]:
        start_at = self._time_in(aware(start, "start"))
        end_at = self._time_in(aware(end, "end"))
        rows = self._all(
            f"SELECT {RUN} FROM {{runs}} WHERE scheduler_name = %s AND scheduled_time >= %s "
            "AND scheduled_time <= %s ORDER BY scheduled_time, attempt",
            (scheduler_name, start_at, end_at),
        )
        latest: dict[datetime, RunRecord] = {}
        for row in rows:
            record = self._run_record(row)
            assert record.scheduled_time is not None
            latest[record.scheduled_time] = record  # later attempts come last
        return latest

    def succeeded_ticks(
        self, pipeline_names: Sequence[str], *, finished_since: datetime
    ) -> list[RunRecord]:
        if not pipeline_names:
            return []
        rows = self._all(
            f"SELECT {RUN} FROM {{runs}} WHERE status = %s AND pipeline_name {{in_list}} "
            "AND scheduled_time IS NOT NULL AND finished_at >= %s "
            "ORDER BY scheduled_time, finished_at",
            (
                RunStatus.SUCCEEDED.value,
                self._list_param(list(pipeline_names)),
                self._time_in(aware(finished_since, "finished_since")),
            ),
        )
        return [self._run_record(row) for row in rows]

    def succeeded_at(
        self, pipeline_names: Sequence[str], scheduled_time: datetime
    ) -> dict[str, RunRecord]:
        if not pipeline_names:
            return {}
        rows = self._all(
            f"SELECT {RUN} FROM {{runs}} WHERE status = %s AND pipeline_name {{in_list}} "
            "AND scheduled_time = %s ORDER BY finished_at",
            (
                RunStatus.SUCCEEDED.value,
                self._list_param(list(pipeline_names)),
                self._time_in(aware(scheduled_time, "scheduled_time")),
            ),
        )
        return {record.pipeline_name: record for record in map(self._run_record, rows)}
