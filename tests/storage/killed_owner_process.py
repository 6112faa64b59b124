"""An owner of one run, of each kind, for the SIGKILL tests: ``python -m
tests.storage.killed_owner_process KIND [PORT]``, its database and heartbeat from the
environment (``DATABASE_URL``, ``DATABASE_SCHEMA``, ``TH2ETL_HEARTBEAT_INTERVAL``).

* ``python``: ``storage.run_pipeline("held")``;
* ``cli``: ``th2etl run held``;
* ``scheduler``: a scheduler manager on the system clock read ahead, so that the stored
  ``held_minutely`` schedule fires two seconds after the start;
* ``api``: the API service on 127.0.0.1:PORT (the test asks it to run ``held``).

Each holds its run in the ``test_lease_hold`` bloc until the test kills it.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

from th2etl.clock import SystemClock
from th2etl.configs.settings import get_settings
from th2etl.storage import DatabaseStorage

from . import lease_blocs

assert lease_blocs  # registers test_lease_hold


class SoonClock(SystemClock):
    """The system clock, read ahead so that the next minute boundary is two seconds away."""

    def __init__(self) -> None:
        now = super().now()
        boundary = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        self.offset = boundary - now - timedelta(seconds=2)

    def now(self) -> datetime:
        return super().now() + self.offset


def main() -> int:
    kind = sys.argv[1]
    if kind == "cli":
        from th2etl.runner import main as th2etl

        return th2etl(["run", "held"])
    if kind == "api":
        import uvicorn

        from th2etl.api import create_app

        uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
        return 0
    with DatabaseStorage.from_settings(get_settings()) as storage:
        if kind == "python":
            storage.run_pipeline("held")
            return 0
        from th2etl.executors import make_executor
        from th2etl.scheduler import load_scheduler_manager

        clock = SoonClock()
        executor = make_executor("process", storage, clock=clock)
        manager = load_scheduler_manager(storage, clock=clock, logs_dir=None, executor=executor)
        manager.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
