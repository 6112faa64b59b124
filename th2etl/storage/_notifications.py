"""Notification rules and the outbox: the storage side of :mod:`th2etl.notifications`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from th2etl.exceptions import NotFoundError
from th2etl.pipelines.result import TERMINAL_STATUSES
from th2etl.storage._core import Conflict, SqlCore, aware, dump_json
from th2etl.types import JSON

__all__ = ["Notifications", "OutboxEntry"]

_ENDED = tuple(sorted(status.value for status in TERMINAL_STATUSES))
_OUTBOX = "id, run_id, event, channel, target, payload, attempts"

OutboxEntry = dict[str, Any]
"""An outbox row: id, run_id, event, channel, target, payload (JSON), attempts."""


class Notifications(SqlCore):
    """Rules by scope (a scheduler's name, or ``*`` for the default) and the outbox."""

    def set_notification_rule(self, scope: str, rule: JSON) -> None:
        """Store (or replace) the rule of ``scope``; validated by the caller
        (:class:`th2etl.notifications.NotificationRule`)."""
        values = (dump_json(rule, f"notification rule {scope!r}"), self._time_in(self._now()))
        changed = self._run(
            "UPDATE {notification_rules} SET rule = %s, updated_at = %s WHERE scope = %s",
            (*values, scope),
        )
        if changed == 0:
            try:
                self._run(
                    "INSERT INTO {notification_rules} (rule, updated_at, scope) "
                    "VALUES (%s, %s, %s)",
                    (*values, scope),
                )
            except Conflict:  # stored meanwhile by another process: replace it
                self._run(
                    "UPDATE {notification_rules} SET rule = %s, updated_at = %s WHERE scope = %s",
                    (*values, scope),
                )

    def notification_rules(self) -> dict[str, JSON]:
        """Every stored rule by scope."""
        rows = self._all("SELECT scope, rule FROM {notification_rules} ORDER BY scope")
        return {scope: self._json_out(rule) for scope, rule in rows}

    def delete_notification_rule(self, scope: str) -> None:
        if self._run("DELETE FROM {notification_rules} WHERE scope = %s", (scope,)) == 0:
            raise NotFoundError(
                f"no notification rule for {scope!r}; 'th2etl notify show' lists the rules"
            )

    def ended_runs(self, since: datetime, limit: int = 1000) -> list[JSON]:
        """Runs that ended at or after ``since``, oldest end first: their summaries."""
        rows = self._all(
            "SELECT run_id, pipeline_name, scheduler_name, status, error, started_at, "
            f"finished_at, scheduled_time FROM {{runs}} WHERE finished_at >= %s AND status IN "
            f"({', '.join(['%s'] * len(_ENDED))}) ORDER BY finished_at LIMIT %s",
            (self._time_in(aware(since, "since")), *_ENDED, limit),
        )
        return [self._summary(row) for row in rows]

    def _summary(self, row: Any) -> JSON:
        started = self._time_out(row[5])
        finished = self._time_out_opt(row[6])
        scheduled = self._time_out_opt(row[7])
        return {
            "run_id": row[0],
            "pipeline": row[1],
            "scheduler": row[2],
            "status": row[3],
            "error": row[4],
            "started_at": started.isoformat(),
            "finished_at": finished.isoformat() if finished else None,
            "scheduled_time": scheduled.isoformat() if scheduled else None,
            "duration": (finished - started).total_seconds() if finished else None,
        }

    def enqueue_notification(
        self, run_id: str, event: str, channel: str, target: str, payload: JSON, now: datetime
    ) -> bool:
        """Add a delivery unless the same (run, event, channel, target) is there; True if
        added."""
        at = self._time_in(aware(now, "now"))
        try:
            self._run(
                "INSERT INTO {outbox} (id, run_id, event, channel, target, payload, status, "
                "attempts, next_attempt_at, created_at) VALUES (%s, %s, %s, %s, %s, %s, "
                "'pending', 0, %s, %s)",
                (
                    f"{run_id}:{event}:{channel}:{target}",
                    run_id,
                    event,
                    channel,
                    target,
                    json.dumps(payload),
                    at,
                    at,
                ),
            )
        except Conflict:
            return False
        return True

    def claim_notifications(
        self, owner: str, now: datetime, lease: timedelta, limit: int = 20
    ) -> list[OutboxEntry]:
        """Pending deliveries that are due and not held by another process, each claimed for
        ``owner`` until ``now + lease``: of several processes claiming at once, one gets it."""
        at = self._time_in(aware(now, "now"))
        candidates = self._all(
            f"SELECT {_OUTBOX} FROM {{outbox}} WHERE status = 'pending' AND next_attempt_at <= %s "
            "AND (claimed_until IS NULL OR claimed_until < %s) ORDER BY next_attempt_at LIMIT %s",
            (at, at, limit),
        )
        claimed = []
        for row in candidates:
            won = self._run(
                "UPDATE {outbox} SET claimed_by = %s, claimed_until = %s WHERE id = %s AND "
                "status = 'pending' AND (claimed_until IS NULL OR claimed_until < %s)",
                (owner, self._time_in(now + lease), row[0], at),
            )
            if won:
                claimed.append(
                    {
                        "id": row[0],
                        "run_id": row[1],
                        "event": row[2],
                        "channel": row[3],
                        "target": row[4],
                        "payload": self._json_out(row[5]),
                        "attempts": int(row[6]),
                    }
                )
        return claimed

    def finish_notification(
        self,
        entry_id: str,
        *,
        sent: bool,
        now: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        """Record an attempt: sent, to retry at ``retry_at``, or failed for good."""
        at = self._time_in(aware(now, "now"))
        status = "sent" if sent else ("pending" if retry_at is not None else "failed")
        self._run(
            "UPDATE {outbox} SET status = %s, attempts = attempts + 1, "
            "last_error = COALESCE(%s, last_error), "
            "next_attempt_at = %s, claimed_by = NULL, claimed_until = NULL, sent_at = %s "
            "WHERE id = %s",
            (
                status,
                error,
                self._time_in(retry_at) if retry_at is not None else at,
                at if sent else None,
                entry_id,
            ),
        )

    def notifications_of(self, run_id: str) -> list[JSON]:
        """The deliveries of a run: event, channel, target, status, attempts, last error."""
        rows = self._all(
            "SELECT event, channel, target, status, attempts, last_error FROM {outbox} "
            "WHERE run_id = %s ORDER BY created_at, id",
            (run_id,),
        )
        keys = ("event", "channel", "target", "status", "attempts", "last_error")
        return [dict(zip(keys, row, strict=True)) for row in rows]
