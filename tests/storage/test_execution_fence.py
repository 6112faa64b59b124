"""Coordination.claim_execution: the fence that lets a run execute once even when the task that
executes it runs again (Dask after a worker died)."""

from __future__ import annotations

import threading

import pytest

from tests.storage.conftest import OpenStorage
from th2etl.exceptions import NotFoundError
from th2etl.pipelines.result import RunStatus


def test_of_several_workers_at_once_exactly_one_takes_the_run(open_storage: OpenStorage) -> None:
    storage = open_storage()
    queued = storage.create_run(None, "p", owner_id="svc", started_by="api").run_id
    others = [open_storage() for _ in range(4)]
    barrier = threading.Barrier(len(others))
    taken: list[str] = []

    def claim(index: int) -> None:
        barrier.wait()
        if others[index].claim_execution(queued, f"tcp://10.0.0.{index}:4000"):
            taken.append(f"tcp://10.0.0.{index}:4000")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(others))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 1
    record = storage.get_run(queued)
    assert (record.status, record.worker) == (RunStatus.RUNNING, taken[0])
    # The same task run again later (its worker died) is refused too.
    assert not storage.claim_execution(queued, "tcp://10.0.0.9:4000")


def test_a_running_run_without_a_worker_is_taken_once_and_an_ended_one_never(
    open_storage: OpenStorage,
) -> None:
    storage = open_storage()
    running = storage.create_run(None, "p", owner_id="cli", started_by="cli", status="running")
    assert storage.claim_execution(running.run_id, "tcp://10.0.0.1:4000")
    assert storage.get_run(running.run_id).started_at == running.started_at
    cancelled = storage.create_run(None, "p", owner_id="svc", started_by="api").run_id
    storage.request_cancel(cancelled)  # a queued run is cancelled at once
    assert not storage.claim_execution(cancelled, "tcp://10.0.0.1:4000")
    assert storage.get_run(cancelled).status is RunStatus.CANCELLED
    with pytest.raises(NotFoundError):
        storage.claim_execution("nope", "tcp://10.0.0.1:4000")
