"""Schedulers and the schedule-wide defaults: the rest of the definitions in SQL.

A scheduler binds a pipeline to a trigger or, with ``after_pipelines``, to other pipelines'
success; its options are checked by :mod:`th2etl.scheduler.options` before anything is written.
Writes that change the dependency graph lock the revision row first, so two processes cannot
each add half of a cycle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from itertools import pairwise
from typing import Any

from th2etl._names import check_name
from th2etl.exceptions import InUseError, ValidationError
from th2etl.scheduler.options import (
    OPTION_NAMES,
    ScheduleDefaults,
    ScheduleOptions,
    check_defaults,
    check_options,
)
from th2etl.scheduler.policies import MissedTickPolicy, OverlapPolicy
from th2etl.storage._core import Conflict, Session, dump_json
from th2etl.storage._definitions import (
    _SCHEDULER,
    Definitions,
    _exists,
    _missing,
    _placeholders,
)
from th2etl.storage._validation import check_description, check_reference, names_list
from th2etl.storage.records import SchedulerRecord

__all__ = ["Schedules", "find_cycle"]

_DEFAULTS = "missed, overlap, max_active_runs, timeout"


def find_cycle(
    edges: Mapping[str, Mapping[str, str]], start: str, ends: Sequence[str]
) -> list[str]:
    """A path ``start`` -> ... -> one of ``ends`` along ``edges`` (pipeline -> {downstream
    pipeline: scheduler}), as pipeline names, or ``[]``: adding ``end -> start`` for each end
    closes a cycle exactly when there is one."""
    parents: dict[str, str | None] = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        if node in ends:
            path = [node]
            while (parent := parents[path[-1]]) is not None:
                path.append(parent)
            return path[::-1]
        for child in sorted(edges.get(node, {})):
            if child not in parents:
                parents[child] = node
                queue.append(child)
    return []


class Schedules(Definitions):
    """Scheduler methods of :class:`~th2etl.storage.definition_store.DefinitionStore`."""

    def _scheduler(self, row: Sequence[Any]) -> SchedulerRecord:
        return SchedulerRecord(
            row[0],
            row[1],
            row[2],
            bool(row[3]),
            row[4],
            self._time_out(row[5]),
            self._time_out(row[6]),
            variables=self._json_out(row[7]),
            missed=None if row[8] is None else MissedTickPolicy(row[8]),
            overlap=None if row[9] is None else OverlapPolicy(row[9]),
            max_active_runs=row[10],
            timeout=row[11],
            start_date=self._time_out_opt(row[12]),
            end_date=self._time_out_opt(row[13]),
            after_pipelines=self._json_out(row[14]),
        )

    def _values(self, record: SchedulerRecord) -> tuple[Any, ...]:
        owner = f"scheduler {record.name!r}"
        return (
            record.name,
            record.pipeline_name,
            record.trigger_name,
            record.enabled,
            record.description,
            self._time_in(record.created_at),
            self._time_in(record.updated_at),
            dump_json(record.variables, f"{owner}: variables"),
            None if record.missed is None else record.missed.value,
            None if record.overlap is None else record.overlap.value,
            record.max_active_runs,
            record.timeout,
            self._time_in_opt(record.start_date, f"{owner}: start_date"),
            self._time_in_opt(record.end_date, f"{owner}: end_date"),
            json.dumps(record.after_pipelines),
        )

    def _checked(self, record: SchedulerRecord) -> SchedulerRecord:
        """``record`` with its names, source and options checked (no database needed)."""
        name = record.name
        owner = f"scheduler {name!r}"
        check_reference("scheduler", name, "pipeline", record.pipeline_name)
        if not isinstance(record.enabled, bool):
            raise ValidationError(f"{owner}: enabled must be True or False, got {record.enabled!r}")
        check_description("scheduler", name, record.description)
        after = record.after_pipelines
        if isinstance(after, str) or not isinstance(after, Sequence):
            raise ValidationError(
                f"{owner}: after_pipelines must be a list of pipeline names, got {after!r}"
            )
        after = [check_reference("scheduler", name, "pipeline", p) for p in after]
        if len(set(after)) != len(after):
            raise ValidationError(f"{owner}: after_pipelines names a pipeline twice: {after!r}")
        if record.trigger_name is not None:
            check_reference("scheduler", name, "trigger", record.trigger_name)
        if (record.trigger_name is None) == (not after):
            raise ValidationError(
                f"{owner}: give either trigger_name (run on a cron trigger) or after_pipelines "
                "(run when those pipelines succeeded for the same logical time), not "
                f"{'both' if after else 'neither'}"
            )
        options = check_options(owner, record.options.to_dict() | _dated(record.options))
        return replace(record, after_pipelines=after, **_fields(options))

    def _check_targets(self, db: Session, record: SchedulerRecord) -> None:
        """Every pipeline named exists, and the dependencies close no cycle (in ``db``)."""
        db.one("SELECT revision FROM {revision} WHERE id = 1{for_update}")
        wanted = [record.pipeline_name, *record.after_pipelines]
        found = {
            row[0]
            for row in db.all(
                "SELECT name FROM {pipelines} WHERE name {in_list}", (self._list_param(wanted),)
            )
        }
        missing = [name for name in wanted if name not in found]
        if missing:
            raise ValidationError(
                f"scheduler {record.name!r}: pipeline {missing[0]!r} does not exist; create "
                f"it first with create_pipeline({missing[0]!r}, ...)"
            )
        if record.trigger_name is not None and (
            db.one("SELECT 1 FROM {triggers} WHERE name = %s", (record.trigger_name,)) is None
        ):
            raise ValidationError(
                f"scheduler {record.name!r}: trigger {record.trigger_name!r} does not exist; "
                f"create it first with create_trigger({record.trigger_name!r}, ...)"
            )
        if not record.after_pipelines:
            return
        edges: dict[str, dict[str, str]] = {}
        for other, pipeline, after in db.all(
            "SELECT name, pipeline_name, after_pipelines FROM {schedulers} WHERE name <> %s",
            (record.name,),
        ):
            for upstream in self._json_out(after):
                edges.setdefault(upstream, {})[pipeline] = other
        path = find_cycle(edges, record.pipeline_name, record.after_pipelines)
        if path:
            cycle = " -> ".join([path[-1], *path])
            by = [f"{edges[a][b]!r} runs {b!r} after {a!r}" for a, b in pairwise(path)]
            by.append(f"this one would run {path[0]!r} after {path[-1]!r}")
            raise ValidationError(
                f"scheduler {record.name!r}: after_pipelines would close a cycle of pipeline "
                f"dependencies: {cycle} (scheduler {'; scheduler '.join(by)}); nothing was "
                "stored. Remove one of these dependencies"
            )

    def create_scheduler(
        self,
        name: str,
        pipeline_name: str,
        trigger_name: str | None = None,
        enabled: bool = True,
        description: str = "",
        *,
        after_pipelines: Sequence[str] = (),
        variables: Mapping[str, Any] | None = None,
        missed: str | None = None,
        overlap: str | None = None,
        max_active_runs: int | None = None,
        timeout: float | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> SchedulerRecord:
        check_name("scheduler", name)
        now = self._now()
        options = check_options(
            f"scheduler {name!r}",
            {
                "variables": variables,
                "missed": missed,
                "overlap": overlap,
                "max_active_runs": max_active_runs,
                "timeout": timeout,
                "start_date": start_date,
                "end_date": end_date,
            },
        )
        record = self._checked(
            SchedulerRecord(
                name,
                pipeline_name,
                trigger_name,
                enabled,
                description,
                now,
                now,
                after_pipelines=list(after_pipelines or ()),
                **_fields(options),
            )
        )
        try:
            with self._session() as db:
                self._check_targets(db, record)
                db.run(
                    f"INSERT INTO {{schedulers}} ({_SCHEDULER}) VALUES ({_placeholders(15)})",
                    self._values(record),
                )
        except Conflict as exc:
            if exc.kind == "unique":
                raise _exists("scheduler", name) from None
            raise ValidationError(
                f"scheduler {name!r}: its pipeline or trigger was deleted meanwhile; nothing was "
                "stored, try again"
            ) from None
        return record

    def get_scheduler(self, name: str) -> SchedulerRecord:
        return self._get("scheduler", name, self._scheduler)

    def list_schedulers(
        self, *, enabled: bool | None = None, pipeline_name: str | None = None
    ) -> list[SchedulerRecord]:
        return self._list(
            "scheduler", self._scheduler, enabled=enabled, pipeline_name=pipeline_name
        )

    def update_scheduler(
        self,
        name: str,
        *,
        pipeline_name: str | None = None,
        trigger_name: str | None = None,
        enabled: bool | None = None,
        description: str | None = None,
        after_pipelines: Sequence[str] | None = None,
        variables: Mapping[str, Any] | None = None,
        missed: str | None = None,
        overlap: str | None = None,
        max_active_runs: int | None = None,
        timeout: float | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        reset: Sequence[str] = (),
    ) -> SchedulerRecord:
        check_name("scheduler", name)
        owner = f"scheduler {name!r}"
        unknown = [option for option in reset if option not in OPTION_NAMES]
        if isinstance(reset, str) or unknown:
            raise ValidationError(
                f"{owner}: reset names options to unset, one of {', '.join(OPTION_NAMES)}; got "
                f"{unknown[0] if unknown else reset!r}"
            )
        if trigger_name is not None and after_pipelines:
            raise ValidationError(f"{owner}: give either trigger_name or after_pipelines, not both")
        given = {
            "variables": variables,
            "missed": missed,
            "overlap": overlap,
            "max_active_runs": max_active_runs,
            "timeout": timeout,
            "start_date": start_date,
            "end_date": end_date,
        }
        check_options(owner, given)  # refuse a bad value before reading anything
        if after_pipelines:
            source: tuple[str | None, list[str] | None] = (None, list(after_pipelines))
        elif trigger_name is not None:
            source = (trigger_name, [])
        else:
            source = (None, None)
        try:
            with self._session() as db:
                old = self._get("scheduler", name, self._scheduler, db)
                kept = _fields(old.options)
                merged = {
                    option: None if option in reset else kept[option] for option in OPTION_NAMES
                } | {key: value for key, value in given.items() if value is not None}
                new = self._checked(
                    replace(
                        old,
                        pipeline_name=old.pipeline_name if pipeline_name is None else pipeline_name,
                        trigger_name=old.trigger_name if source[1] is None else source[0],
                        after_pipelines=old.after_pipelines if source[1] is None else source[1],
                        enabled=old.enabled if enabled is None else enabled,
                        description=old.description if description is None else description,
                        updated_at=self._now(),
                        **_fields(check_options(owner, merged)),
                    )
                )
                self._check_targets(db, new)
                db.run(
                    "UPDATE {schedulers} SET "
                    + ", ".join(f"{column} = %s" for column in _SCHEDULER.split(", ")[1:])
                    + " WHERE name = %s",
                    (*self._values(new)[1:], name),
                )
        except Conflict:
            raise ValidationError(
                f"{owner}: its pipeline or trigger was deleted meanwhile; nothing was changed, "
                "try again"
            ) from None
        return new

    def delete_scheduler(self, name: str) -> None:
        check_name("scheduler", name)
        if self._run("DELETE FROM {schedulers} WHERE name = %s", (name,)) == 0:
            raise _missing("scheduler", name)

    def delete_pipeline(self, name: str) -> None:
        check_name("pipeline", name)
        waiting = sorted(
            other
            for other, after in self._all("SELECT name, after_pipelines FROM {schedulers}")
            if name in self._json_out(after)
        )
        if waiting:
            raise InUseError(
                f"pipeline {name!r} is awaited by scheduler(s) {names_list(waiting)} "
                "(after_pipelines); delete them or change their after_pipelines first"
            )
        super().delete_pipeline(name)

    # --- schedule-wide defaults ---------------------------------------------------------------

    def get_schedule_defaults(self) -> ScheduleDefaults:
        row = self._one(f"SELECT {_DEFAULTS} FROM {{schedule_defaults}} WHERE id = 1")
        return check_defaults(
            "schedule defaults", dict(zip(_DEFAULTS.split(", "), row, strict=True))
        )

    def set_schedule_defaults(
        self,
        *,
        missed: str | None = None,
        overlap: str | None = None,
        max_active_runs: int | None = None,
        timeout: float | None = None,
    ) -> ScheduleDefaults:
        defaults = check_defaults(
            "schedule defaults",
            {
                "missed": missed,
                "overlap": overlap,
                "max_active_runs": max_active_runs,
                "timeout": timeout,
            },
        )
        self._run(
            "UPDATE {schedule_defaults} SET missed = %s, overlap = %s, max_active_runs = %s, "
            "timeout = %s WHERE id = 1",
            (
                None if defaults.missed is None else defaults.missed.value,
                None if defaults.overlap is None else defaults.overlap.value,
                defaults.max_active_runs,
                defaults.timeout,
            ),
        )
        return defaults


def _dated(options: ScheduleOptions) -> dict[str, Any]:
    return {
        "variables": options.variables,
        "start_date": options.start_date,
        "end_date": options.end_date,
    }


def _fields(options: ScheduleOptions) -> dict[str, Any]:
    return {**options.to_dict(), **_dated(options)}
