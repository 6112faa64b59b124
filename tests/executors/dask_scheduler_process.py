"""A scheduler instance submitting its runs to a Dask cluster, for the exactly-once test:
``python -m tests.executors.dask_scheduler_process INSTANCE_ID START`` (the database from the
environment, the cluster from ``TH2ETL_EXECUTOR``).

Like ``tests.scheduler.manager_process``: it runs ``load_scheduler_manager`` on its own
FakeClock, reads instants from stdin, one ISO line at a time, advances its clock to each and
answers one JSON line with what it did; the runs it starts execute on the cluster.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

import tests.executors.dask_blocs  # noqa: F401 - the bloc types stored in the database
from th2etl.clock import FakeClock
from th2etl.configs.settings import get_settings
from th2etl.executors import make_executor
from th2etl.scheduler import load_scheduler_manager
from th2etl.storage import DatabaseStorage


def main() -> None:
    instance_id, start = sys.argv[1:3]
    clock = FakeClock(datetime.fromisoformat(start))
    settings = get_settings()
    assert settings.executor is not None
    with DatabaseStorage.from_settings(settings, clock=clock) as storage:
        executor = make_executor(settings.executor, storage, clock=clock)
        manager = load_scheduler_manager(
            storage,
            clock=clock,
            instance_id=instance_id,
            heartbeat_interval=10,
            reload_interval=5,
            logs_dir=None,
            inline=False,
            executor=executor,
        )
        manager.start()
        print(json.dumps({"ready": instance_id}), flush=True)
        for line in sys.stdin:
            instant = datetime.fromisoformat(line.strip())
            results = clock.advance(until=instant)
            answer = {"at": instant.isoformat(), "results": [r.to_dict() for r in results]}
            print(json.dumps(answer), flush=True)
        manager.stop()
        executor.shutdown()


if __name__ == "__main__":
    main()
