"""Deleting old runs in small batches: the storage side of :mod:`th2etl.retention`."""

from __future__ import annotations

from datetime import datetime

from th2etl.pipelines.result import TERMINAL_STATUSES
from th2etl.storage._core import SqlCore, aware

__all__ = ["Retention"]

_ENDED = tuple(sorted(status.value for status in TERMINAL_STATUSES))
_OLD = f"status IN ({', '.join(['%s'] * len(_ENDED))}) AND started_at < %s"


class Retention(SqlCore):
    """Counting and deleting ended runs that started before a cut-off."""

    def count_prunable_runs(self, before: datetime) -> tuple[int, int]:
        """(ended runs that started before ``before``, how many of them are scheduler ticks)."""
        row = self._one(
            "SELECT COUNT(*), COUNT(scheduled_time) FROM {runs} WHERE " + _OLD,
            (*_ENDED, self._time_in(aware(before, "before"))),
        )
        return int(row[0]), int(row[1])

    def prune_runs_batch(self, before: datetime, limit: int) -> tuple[int, int]:
        """Delete at most ``limit`` ended runs that started before ``before`` (oldest first),
        with their bloc runs and logs, in one short transaction; keep a scheduler tick's
        (scheduler, time, attempt, status) in ``th2etl_ticks``. Return (runs deleted, ticks
        kept); 0 runs means nothing is left to prune. Queued and running runs are never
        deleted."""
        with self._session() as db:
            ids = [
                row[0]
                for row in db.all(
                    f"SELECT run_id FROM {{runs}} WHERE {_OLD} ORDER BY started_at LIMIT %s"
                    "{for_update}",
                    (*_ENDED, self._time_in(aware(before, "before")), limit),
                )
            ]
            if not ids:
                return 0, 0
            # Padded with NULLs (which match nothing) to one statement per batch size.
            padded = [*ids, *([None] * (limit - len(ids)))]
            among = f"run_id IN ({', '.join(['%s'] * limit)})"
            ticks = db.run(
                "INSERT INTO {ticks} (scheduler_name, scheduled_time, attempt, status) "
                "SELECT scheduler_name, scheduled_time, attempt, status FROM {runs} "
                f"WHERE {among} AND scheduler_name IS NOT NULL AND scheduled_time IS NOT NULL "
                "ON CONFLICT DO NOTHING",
                padded,
            )
            db.run(f"DELETE FROM {{bloc_runs}} WHERE {among}", padded)
            deleted = db.run(f"DELETE FROM {{runs}} WHERE {among}", padded)
        return deleted, ticks
