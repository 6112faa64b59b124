"""Blocs, pipelines and triggers: the definition half of the SQL storage (schedulers are in
:mod:`th2etl.storage._schedules`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from th2etl._names import check_name
from th2etl.exceptions import AlreadyExistsError, InUseError, NotFoundError, ValidationError
from th2etl.pipelines.pipeline import check_timeout
from th2etl.storage._core import Conflict, Session, SqlCore
from th2etl.storage._validation import (
    check_bloc,
    check_cron,
    check_description,
    check_reference,
    check_stage_blocs,
    check_stages,
    names_list,
)
from th2etl.storage.records import BlocRecord, PipelineRecord, TriggerRecord

__all__ = ["Definitions"]

_BLOC = "name, bloc_type, config, description, created_at, updated_at"
_PIPELINE = "name, stages, description, created_at, updated_at, timeout"
_TRIGGER = "name, pipeline_name, cron_expression, timezone, description, created_at, updated_at"
_SCHEDULER = (
    "name, pipeline_name, trigger_name, enabled, description, created_at, updated_at, "
    "variables, missed, overlap, max_active_runs, timeout, start_date, end_date, after_pipelines"
)
_TABLES = {
    "bloc": ("blocs", _BLOC),
    "pipeline": ("pipelines", _PIPELINE),
    "trigger": ("triggers", _TRIGGER),
    "scheduler": ("schedulers", _SCHEDULER),
}
R = TypeVar("R")


def _placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


def _exists(kind: str, name: str) -> AlreadyExistsError:
    return AlreadyExistsError(
        f"{kind} {name!r} already exists; pick another name, or change it with "
        f"update_{kind}({name!r}, ...)"
    )


def _missing(kind: str, name: str) -> NotFoundError:
    return NotFoundError(
        f"{kind} {name!r} does not exist; list_{kind}s() shows the stored ones, "
        f"create_{kind}({name!r}, ...) creates it"
    )


class Definitions(SqlCore):
    """The definitions role (:mod:`th2etl.storage.definition_store`), written once in SQL."""

    def _bloc(self, row: Sequence[Any]) -> BlocRecord:
        return BlocRecord(
            row[0],
            row[1],
            self._json_out(row[2]),
            row[3],
            self._time_out(row[4]),
            self._time_out(row[5]),
        )

    def _pipeline(self, row: Sequence[Any]) -> PipelineRecord:
        return PipelineRecord(
            row[0],
            self._json_out(row[1]),
            row[2],
            self._time_out(row[3]),
            self._time_out(row[4]),
            row[5],
        )

    def _trigger(self, row: Sequence[Any]) -> TriggerRecord:
        return TriggerRecord(
            row[0], row[1], row[2], row[3], row[4], self._time_out(row[5]), self._time_out(row[6])
        )

    def _get(
        self,
        kind: str,
        name: str,
        decode: Callable[[Sequence[Any]], R],
        db: Session | None = None,
        *,
        lock: bool = True,
    ) -> R:
        """The ``kind`` called ``name``; inside ``db``'s transaction, locked for update."""
        check_name(kind, name)
        table, columns = _TABLES[kind]
        select = f"SELECT {columns} FROM {{{table}}} WHERE name = %s"
        if db is None:
            row = self._one(select, (name,))
        else:
            row = db.one(select + ("{for_update}" if lock else ""), (name,))
        if row is None:
            raise _missing(kind, name)
        return decode(row)

    def _list(self, kind: str, decode: Callable[[Sequence[Any]], R], **equal: Any) -> list[R]:
        """Every ``kind``, sorted by name, whose columns equal the ``equal`` not None."""
        table, columns = _TABLES[kind]
        given = {column: value for column, value in equal.items() if value is not None}
        where = " AND ".join(f"{column} = %s" for column in given)
        rows = self._all(
            f"SELECT {columns} FROM {{{table}}}{' WHERE ' if where else ''}{where} ORDER BY name",
            list(given.values()),
        )
        return [decode(row) for row in rows]

    def revision(self) -> int:
        return int(self._one("SELECT revision FROM {revision} WHERE id = 1")[0])

    # --- blocs ------------------------------------------------------------------------------

    def create_bloc(
        self,
        name: str,
        bloc_type: str,
        config: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> BlocRecord:
        bloc_type, text, stored = check_bloc(name, bloc_type, config)
        check_description("bloc", name, description)
        now = self._now()
        at = self._time_in(now)
        try:
            # One statement (the revision trigger runs inside it): atomic without BEGIN.
            self._run(
                f"INSERT INTO {{blocs}} ({_BLOC}) VALUES ({_placeholders(6)})",
                (name, bloc_type, text, description, at, at),
            )
        except Conflict:
            raise _exists("bloc", name) from None
        return BlocRecord(name, bloc_type, stored, description, now, now)

    def get_bloc(self, name: str) -> BlocRecord:
        return self._get("bloc", name, self._bloc)

    def list_blocs(self, *, bloc_type: str | None = None) -> list[BlocRecord]:
        return self._list("bloc", self._bloc, bloc_type=bloc_type)

    def update_bloc(
        self,
        name: str,
        *,
        bloc_type: str | None = None,
        config: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> BlocRecord:
        check_name("bloc", name)
        with self._session() as db:
            old = self._get("bloc", name, self._bloc, db)
            new_type, text, stored = check_bloc(
                name,
                old.bloc_type if bloc_type is None else bloc_type,
                old.config if config is None else config,
            )
            new_description = check_description(
                "bloc", name, old.description if description is None else description
            )
            now = self._now()
            new = BlocRecord(name, new_type, stored, new_description, old.created_at, now)
            # A changed source_bloc may break the stage order of pipelines using this bloc.
            users = db.all(
                "SELECT pipeline_name FROM {pipeline_blocs} WHERE bloc_name = %s "
                "ORDER BY pipeline_name",
                (name,),
            )
            for (pipeline_name,) in users:
                pipeline, blocs = self._read_definition(db, pipeline_name)
                check_stage_blocs(
                    pipeline_name, pipeline.stages, {**{b.name: b for b in blocs}, name: new}
                )
            db.run(
                "UPDATE {blocs} SET bloc_type = %s, config = %s, description = %s, "
                "updated_at = %s WHERE name = %s",
                (new_type, text, new_description, self._time_in(now), name),
            )
        return new

    def delete_bloc(self, name: str) -> None:
        check_name("bloc", name)
        try:
            with self._session() as db:
                users = [
                    row[0]
                    for row in db.all(
                        "SELECT pipeline_name FROM {pipeline_blocs} WHERE bloc_name = %s "
                        "ORDER BY pipeline_name",
                        (name,),
                    )
                ]
                if users:
                    raise InUseError(
                        f"bloc {name!r} is used by pipeline(s) {names_list(users)}; remove it "
                        "from their stages (update_pipeline) or delete them first"
                    )
                if db.run("DELETE FROM {blocs} WHERE name = %s", (name,)) == 0:
                    raise _missing("bloc", name)
        except Conflict:
            raise InUseError(
                f"bloc {name!r} was added to a pipeline while it was being deleted; "
                "it is in use, nothing was deleted"
            ) from None

    # --- pipelines --------------------------------------------------------------------------

    def _stage_blocs(
        self, db: Session, name: str, stages: list[list[str]]
    ) -> dict[str, BlocRecord]:
        """The stage blocs, locked against change until commit, checked for existence/order."""
        names = sorted({bloc for stage in stages for bloc in stage})
        rows = db.all(
            f"SELECT {_BLOC} FROM {{blocs}} WHERE name {{in_list}}{{for_share}}",
            (self._list_param(names),),
        )
        blocs = {row[0]: self._bloc(row) for row in rows}
        check_stage_blocs(name, stages, blocs)
        return blocs

    def create_pipeline(
        self,
        name: str,
        stages: Sequence[Sequence[str]],
        description: str = "",
        timeout: float | None = None,
    ) -> PipelineRecord:
        shape = check_stages(name, stages)
        check_description("pipeline", name, description)
        seconds = check_timeout(name, timeout)
        now = self._now()
        at = self._time_in(now)
        try:
            with self._session() as db:
                self._stage_blocs(db, name, shape)
                db.run(
                    f"INSERT INTO {{pipelines}} ({_PIPELINE}) VALUES ({_placeholders(6)})",
                    (name, json.dumps(shape), description, at, at, seconds),
                )
        except Conflict as exc:
            if exc.kind == "unique":
                raise _exists("pipeline", name) from None
            raise ValidationError(
                f"pipeline {name!r}: one of its blocs was deleted meanwhile; nothing was "
                "created, try again"
            ) from None
        return PipelineRecord(name, shape, description, now, now, seconds)

    def get_pipeline(self, name: str) -> PipelineRecord:
        return self._get("pipeline", name, self._pipeline)

    def list_pipelines(self) -> list[PipelineRecord]:
        return self._list("pipeline", self._pipeline)

    def _read_definition(self, db: Session, name: str) -> tuple[PipelineRecord, list[BlocRecord]]:
        pipeline = self._get("pipeline", name, self._pipeline, db, lock=False)
        columns = ", ".join(f"b.{column}" for column in _BLOC.split(", "))
        rows = db.all(
            f"SELECT {columns} FROM {{pipeline_blocs}} AS pb JOIN {{blocs}} AS b "
            "ON b.name = pb.bloc_name WHERE pb.pipeline_name = %s ORDER BY pb.position",
            (name,),
        )
        return pipeline, [self._bloc(r) for r in rows]

    def get_pipeline_definition(self, name: str) -> tuple[PipelineRecord, list[BlocRecord]]:
        check_name("pipeline", name)
        with self._session(write=False) as db:
            return self._read_definition(db, name)

    def update_pipeline(
        self,
        name: str,
        *,
        stages: Sequence[Sequence[str]] | None = None,
        description: str | None = None,
        timeout: float | None = None,
    ) -> PipelineRecord:
        check_name("pipeline", name)
        shape = None if stages is None else check_stages(name, stages)
        seconds = check_timeout(name, timeout)
        try:
            with self._session() as db:
                old = self._get("pipeline", name, self._pipeline, db)
                new_description = check_description(
                    "pipeline", name, old.description if description is None else description
                )
                now = self._now()
                if shape is not None:
                    self._stage_blocs(db, name, shape)
                new_stages = old.stages if shape is None else shape
                new_timeout = old.timeout if timeout is None else seconds
                db.run(
                    "UPDATE {pipelines} SET stages = %s, description = %s, updated_at = %s, "
                    "timeout = %s WHERE name = %s",
                    (
                        json.dumps(new_stages),
                        new_description,
                        self._time_in(now),
                        new_timeout,
                        name,
                    ),
                )
        except Conflict:
            raise ValidationError(
                f"pipeline {name!r}: one of its blocs was deleted meanwhile; nothing was "
                "changed, try again"
            ) from None
        return PipelineRecord(name, new_stages, new_description, old.created_at, now, new_timeout)

    def delete_pipeline(self, name: str) -> None:
        check_name("pipeline", name)
        self._delete_used("pipeline", name, "pipelines", "pipeline_name")

    def _delete_used(self, kind: str, name: str, table: str, column: str) -> None:
        """Delete a pipeline or trigger unless a scheduler refers to it."""
        try:
            with self._session() as db:
                users = [
                    row[0]
                    for row in db.all(
                        f"SELECT name FROM {{schedulers}} WHERE {column} = %s ORDER BY name",
                        (name,),
                    )
                ]
                if users:
                    raise InUseError(
                        f"{kind} {name!r} is used by scheduler(s) {names_list(users)}; delete "
                        f"them or point them at another {kind} (update_scheduler) first"
                    )
                if db.run(f"DELETE FROM {{{table}}} WHERE name = %s", (name,)) == 0:
                    raise _missing(kind, name)
        except Conflict:
            raise InUseError(
                f"{kind} {name!r} got a scheduler while it was being deleted; it is in use, "
                "nothing was deleted"
            ) from None

    # --- triggers ---------------------------------------------------------------------------

    def create_trigger(
        self,
        name: str,
        pipeline_name: str | None = None,
        cron_expression: str | None = None,
        timezone: str = "UTC",
        description: str = "",
    ) -> TriggerRecord:
        check_name("trigger", name)
        if pipeline_name is not None:
            check_reference("trigger", name, "pipeline", pipeline_name)
        cron, zone = check_cron(name, cron_expression, timezone)
        check_description("trigger", name, description)
        now = self._now()
        at = self._time_in(now)
        values = (name, pipeline_name, cron, zone, description)
        try:
            self._run(
                f"INSERT INTO {{triggers}} ({_TRIGGER}) VALUES ({_placeholders(7)})",
                (*values, at, at),
            )
        except Conflict:
            raise _exists("trigger", name) from None
        return TriggerRecord(*values, now, now)

    def get_trigger(self, name: str) -> TriggerRecord:
        return self._get("trigger", name, self._trigger)

    def list_triggers(self, *, pipeline_name: str | None = None) -> list[TriggerRecord]:
        return self._list("trigger", self._trigger, pipeline_name=pipeline_name)

    def update_trigger(
        self,
        name: str,
        *,
        pipeline_name: str | None = None,
        cron_expression: str | None = None,
        timezone: str | None = None,
        description: str | None = None,
    ) -> TriggerRecord:
        check_name("trigger", name)
        with self._session() as db:
            old = self._get("trigger", name, self._trigger, db)
            new_pipeline = old.pipeline_name if pipeline_name is None else pipeline_name
            if new_pipeline is not None:
                check_reference("trigger", name, "pipeline", new_pipeline)
            new_cron, new_zone = check_cron(
                name,
                old.cron_expression if cron_expression is None else cron_expression,
                old.timezone if timezone is None else timezone,
            )
            new_description = check_description(
                "trigger", name, old.description if description is None else description
            )
            now = self._now()
            db.run(
                "UPDATE {triggers} SET pipeline_name = %s, cron_expression = %s, timezone = %s, "
                "description = %s, updated_at = %s WHERE name = %s",
                (new_pipeline, new_cron, new_zone, new_description, self._time_in(now), name),
            )
        return TriggerRecord(
            name, new_pipeline, new_cron, new_zone, new_description, old.created_at, now
        )

    def delete_trigger(self, name: str) -> None:
        check_name("trigger", name)
        self._delete_used("trigger", name, "triggers", "trigger_name")
