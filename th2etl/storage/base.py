"""The storage contract, documented once: every backend (PostgreSQL, SQLite) keeps it.

The contract is split by role, so that a caller asks for the narrowest one it needs:

* :class:`~th2etl.storage.definition_store.DefinitionStore` -- blocs, pipelines, triggers and
  schedulers (the API's CRUD routes, ``build_pipeline``).
* :class:`~th2etl.storage.run_history.RunHistory` -- runs, their blocs and logs (readers of
  history, the engine's recorder).
* :class:`~th2etl.storage.coordination.Coordination` -- run history plus what processes sharing
  a database agree through: tick claims, heartbeats, abandoned runs, cancel requests (the
  scheduler).
* :class:`Storage` -- all of them (what :class:`~th2etl.storage.DatabaseStorage` implements),
  plus :meth:`Storage.run_pipeline`.

Each role extends :class:`~th2etl.storage.connection.StorageConnection` (describe, health
check, schema version, close).

Guarantees that hold for every method of every role unless it says otherwise:

* **Thread-safe.** One storage object may be shared by the scheduler's, the engine's and the
  API's threads. On PostgreSQL each call borrows a pooled connection (``pool_size``), so
  callers run side by side; on SQLite they take turns on its one connection.
* **One transaction per write.** A write that raises has changed nothing.
* **Validation first.** Definitions are checked (names, bloc types and configs through the bloc
  registry, stages, cron expressions, references) before anything is written; a refusal raises
  :class:`~th2etl.exceptions.ValidationError` naming the thing, the value and the fix.
* **Errors.** Unknown names raise :class:`~th2etl.exceptions.NotFoundError`; a taken name
  :class:`~th2etl.exceptions.AlreadyExistsError` (also when two processes create it at the same
  moment: the database's unique constraint decides); deleting something still used raises
  :class:`~th2etl.exceptions.InUseError` listing the users. When the database cannot be
  reached a call raises :class:`~th2etl.exceptions.DatabaseUnavailableError` naming host, port
  and database (never the password) within the connect timeout, and the *next* call connects
  again by itself. Other database failures raise :class:`~th2etl.exceptions.StorageError`.
* **Verbatim.** Names, descriptions, configs and variables are stored as given and returned
  equal; they are always passed as parameters, never spliced into SQL.
* **Time.** Timestamps are timezone-aware (UTC when read back). Methods that decide something
  from the time take ``now=``; definition timestamps come from the storage's clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from th2etl.storage.connection import StorageConnection
from th2etl.storage.coordination import Coordination
from th2etl.storage.definition_store import DefinitionStore
from th2etl.storage.records import (
    BlocRecord,
    BlocRunRecord,
    InstanceRecord,
    PipelineRecord,
    RunRecord,
    SchedulerRecord,
    TriggerRecord,
)
from th2etl.storage.run_history import RunHistory

if TYPE_CHECKING:
    from th2etl.pipelines.result import RunResult

__all__ = [
    "BlocRecord",
    "BlocRunRecord",
    "Coordination",
    "DefinitionStore",
    "InstanceRecord",
    "PipelineRecord",
    "RunHistory",
    "RunRecord",
    "SchedulerRecord",
    "Storage",
    "StorageConnection",
    "TriggerRecord",
]


class Storage(DefinitionStore, Coordination):
    """Every role at once: definitions, run history and coordination in one database."""

    def run_pipeline(
        self, name: str, variables: Mapping[str, Any] | None = None, **options: Any
    ) -> RunResult:
        """Build the stored pipeline ``name``, run it now with :meth:`recorder` attached, and
        return the result; ``options`` go to :func:`th2etl.pipelines.run_pipeline` (its
        ``clock`` stamps the record too).

        The run records the definitions it executes and ``started_by`` (default
        ``"python"``). Its owner is ``instance_id`` when given (the caller heartbeats for
        it); otherwise a :class:`~th2etl.storage.owner.RunOwner` heartbeats for the run
        while it goes, so a cancel from any process stops it and, should this process die,
        any live th2etl process marks it ``abandoned``."""
        from th2etl.pipelines.cancel import CancelToken
        from th2etl.pipelines.engine import run_pipeline
        from th2etl.pipelines.result import RunStatus
        from th2etl.storage.owner import RunOwner
        from th2etl.storage.recorder import pipeline_from_snapshot

        snapshot = self.definition_snapshot(name)
        pipeline = pipeline_from_snapshot(snapshot)
        instance_id = options.pop("instance_id", None)
        started_by = str(options.pop("started_by", "python"))
        adopted = "run_id" in options  # a run recorded already (e.g. a claimed tick)
        run_id = options.setdefault("run_id", uuid.uuid4().hex)
        token = options.setdefault("cancel_token", CancelToken())
        owner = None
        if instance_id is None:
            owner = RunOwner(self, kind=started_by.partition(":")[0]).start()
            owner.track(run_id, token)
        try:
            if not adopted:
                # Recorded with its owner and where it executes (this thread) before it starts;
                # the recorder adopts the row.
                self.create_run(
                    run_id,
                    pipeline.name,
                    owner_id=instance_id or (owner.instance_id if owner else ""),
                    started_by=started_by,
                    status=RunStatus.RUNNING,
                    definition=snapshot,
                    timeout=pipeline.timeout,
                    executor="thread",
                )
            listener = self.recorder(
                run_id=run_id,
                scheduler_name=options.get("scheduler_name"),
                trigger_name=options.get("trigger_name"),
                instance_id=instance_id or (owner.instance_id if owner else None),
                clock=options.get("clock"),
                started_by=started_by,
                definition=snapshot,
                owner=owner,
            )
            listeners = [*options.pop("listeners", ()), listener]
            options.setdefault("keep_outputs", False)  # a recorded run keeps rows in no memory
            return run_pipeline(pipeline, variables=variables, listeners=listeners, **options)
        finally:
            if owner is not None:
                owner.stop()
