"""A th2etl process that owns one running run, for tests of liveness across processes.

``python owner_process.py URL SCHEMA RUN_ID HEARTBEAT``: records run RUN_ID ``running`` under a
RunOwner heartbeating every HEARTBEAT seconds (its lease: 1.5 of them) on PostgreSQL at URL,
in SCHEMA, or, when URL is not a ``postgresql://`` one, in the SQLite file at that path (SCHEMA
is then ignored), prints ``{"ready": instance id}``, then waits
until the run is asked to stop (from any process), records it ``cancelled`` and prints
``{"cancelled": run id}``. Run it under ``faketime`` to give it a skewed clock.
"""

from __future__ import annotations

import json
import sys
import threading

from th2etl.pipelines.engine import CancelToken
from th2etl.pipelines.result import RunStatus
from th2etl.storage import DatabaseStorage, PostgresStorage, SQLiteStorage
from th2etl.storage.owner import RunOwner


def main() -> None:
    url, schema, run_id, heartbeat = sys.argv[1:5]
    token = CancelToken()
    opened: DatabaseStorage = (
        PostgresStorage(url, schema=schema)
        if url.startswith(("postgresql:", "postgres:"))
        else SQLiteStorage(url)
    )
    with (
        opened as storage,
        RunOwner(storage, kind="cli", heartbeat_interval=float(heartbeat)) as owner,
    ):
        storage.create_run(
            run_id, "skewed", owner_id=owner.instance_id, started_by="cli", status="running"
        )
        owner.track(run_id, token)
        print(json.dumps({"ready": owner.instance_id}), flush=True)
        pause = threading.Event()  # (time.sleep fails under faketime without a fake monotonic)
        while not token.cancelled:
            pause.wait(0.05)
        status, error = owner.outcome(run_id, RunStatus.CANCELLED, "cancelled on request")
        storage.finish_run(run_id, status, finished_at=storage.clock.now(), error=error)
        print(json.dumps({status.value: run_id}), flush=True)


if __name__ == "__main__":
    main()
