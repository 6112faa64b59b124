"""A scheduler instance for the multi-process tests: ``python -m tests.scheduler.manager_process
URL SCHEMA INSTANCE_ID START``.

It runs ``load_scheduler_manager`` on its own FakeClock, then reads instants from stdin, one ISO
line at a time, advances its clock to each and answers one JSON line with what it did. The test
sends every instance the same instant and waits for all answers before the next: the instances
race for each tick at the same moment, in lockstep.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

from th2etl.clock import FakeClock
from th2etl.scheduler import load_scheduler_manager
from th2etl.storage import PostgresStorage

from .helpers import register_stored_bloc_types


def main() -> None:
    url, schema, instance_id, start = sys.argv[1:5]
    register_stored_bloc_types()
    clock = FakeClock(datetime.fromisoformat(start))
    with PostgresStorage(url, schema=schema, clock=clock) as storage:
        manager = load_scheduler_manager(
            storage,
            clock=clock,
            instance_id=instance_id,
            heartbeat_interval=10,
            reload_interval=5,
            logs_dir=None,
        )
        manager.start()
        print(json.dumps({"ready": instance_id}), flush=True)
        for line in sys.stdin:
            instant = datetime.fromisoformat(line.strip())
            results = clock.advance(until=instant)
            answer = {"at": instant.isoformat(), "results": [r.to_dict() for r in results]}
            print(json.dumps(answer), flush=True)
        manager.stop()


if __name__ == "__main__":
    main()
