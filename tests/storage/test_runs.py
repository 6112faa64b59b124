"""The storage contract for run history and scheduler coordination, on both backends."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from th2etl.clock import FakeClock
from th2etl.exceptions import NotFoundError, RunFinishedError, ValidationError
from th2etl.pipelines import BlocStatus, RunContext, RunListener, RunStatus
from th2etl.pipelines.example import example_definitions
from th2etl.storage import DatabaseStorage, RunRecord

from .conftest import OpenStorage

T0 = datetime(2026, 5, 15, 10, 0, tzinfo=UTC)


def _example(storage: DatabaseStorage, name: str = "example_pipeline") -> None:
    blocs, stages = example_definitions("out.csv")
    for bloc_name, (bloc_type, config) in blocs.items():
        storage.create_bloc(bloc_name, bloc_type, config=config)
    storage.create_pipeline(name, stages=stages)


def _claim(storage: DatabaseStorage, tick: datetime, **kwargs: object) -> RunRecord | None:
    options: dict[str, object] = {
        "pipeline_name": "p",
        "trigger_name": "t",
        "instance_id": "i1",
        "now": tick,
    }
    options.update(kwargs)
    return storage.claim_run("s", tick, **options)  # type: ignore[arg-type]


def test_run_pipeline_records_the_run(storage: DatabaseStorage, tmp_path: Path) -> None:
    _example(storage)
    result = storage.run_pipeline(
        "example_pipeline", variables={"day": datetime(2026, 1, 2), "n": 1}, output_dir=tmp_path
    )
    assert result.succeeded, result.summary()
    run = storage.get_run(result.run_id)
    assert run.status is RunStatus.SUCCEEDED
    assert run.pipeline_name == "example_pipeline"
    assert run.started_at == result.started_at and run.finished_at == result.finished_at
    assert run.variables == {"day": "2026-01-02 00:00:00", "n": 1}
    assert run.error is None and run.scheduler_name is None
    assert (run.started_by, run.executor) == ("python", "thread")  # it ran in this thread
    assert run.owner_id is not None and run.owner_id.startswith("python-")
    assert [b.bloc_name for b in run.blocs] == [
        "example_loader",
        "transformer_a",
        "transformer_b",
        "example_exporter",
    ]
    loader = run.blocs[0]
    assert loader.status is BlocStatus.SUCCEEDED and loader.attempts == 1
    assert loader.rows_out == result.blocs["example_loader"].rows_out > 0
    assert run.blocs[1].rows_in == loader.rows_out
    assert run.log is not None
    lines = run.log.splitlines()
    assert f"run {result.run_id} of pipeline 'example_pipeline' started" in lines[0]
    assert "stage 1 bloc 'example_loader' (csv_loader) succeeded: rows in 0, out" in lines[1]
    assert "run succeeded in" in lines[-1]
    assert json.loads(json.dumps(run.to_dict()))["blocs"][0]["status"] == "succeeded"


def test_a_run_on_a_fake_clock_is_recorded_in_fake_time(
    storage: DatabaseStorage, tmp_path: Path
) -> None:
    _example(storage)
    seen: list[datetime] = []

    class Probe(RunListener):
        def bloc_started(self, context: RunContext, bloc: Any, attempt: int) -> None:
            seen.append(storage.get_run(context.run_id).started_at)  # while it runs

    result = storage.run_pipeline(
        "example_pipeline", output_dir=tmp_path, clock=FakeClock(T0), listeners=[Probe()]
    )
    assert result.succeeded, result.summary()
    assert seen and set(seen) == {T0}
    run = storage.get_run(result.run_id)
    assert run.started_at == T0 and run.finished_at == T0
    assert run.log is not None
    stamps = {line[:29] for line in run.log.splitlines() if not line.startswith(" ")}
    assert stamps == {"2026-05-15T10:00:00.000+00:00"}


def test_failed_run_keeps_the_error(storage: DatabaseStorage, tmp_path: Path) -> None:
    storage.create_bloc("load", "csv_loader", config={"file_path": str(tmp_path / "none.csv")})
    storage.create_bloc("double", "example_transformer")
    storage.create_pipeline("p", stages=[["load"], ["double"]])
    result = storage.run_pipeline("p")
    run = storage.get_run(result.run_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None and "bloc 'load' failed: BlocError:" in run.error
    assert [b.status for b in run.blocs] == [BlocStatus.FAILED, BlocStatus.SKIPPED]
    assert run.blocs[0].error_type == "BlocError"
    assert run.blocs[0].error_traceback and "Traceback" in run.blocs[0].error_traceback
    assert run.log is not None and "    BlocError: " in run.log


def test_list_runs_filters_newest_first(storage: DatabaseStorage) -> None:
    for minute, (pipeline, scheduler) in enumerate(
        [("a", None), ("a", "s1"), ("b", "s1"), ("b", None)]
    ):
        run_id = f"run{minute}"
        storage.start_run(
            run_id, pipeline, started_at=T0 + timedelta(minutes=minute), scheduler_name=scheduler
        )
        if minute % 2:
            storage.finish_run(
                run_id, "failed", finished_at=T0 + timedelta(minutes=minute, seconds=5), error="x"
            )
    ids = lambda runs: [r.run_id for r in runs]  # noqa: E731
    assert ids(storage.list_runs()) == ["run3", "run2", "run1", "run0"]
    assert ids(storage.list_runs(pipeline_name="a")) == ["run1", "run0"]
    assert ids(storage.list_runs(scheduler_name="s1")) == ["run2", "run1"]
    assert ids(storage.list_runs(status=RunStatus.FAILED)) == ["run3", "run1"]
    assert ids(storage.list_runs(status="running", pipeline_name="b")) == ["run2"]
    assert ids(storage.list_runs(since=T0 + timedelta(minutes=1))) == ["run3", "run2", "run1"]
    assert ids(storage.list_runs(until=T0 + timedelta(minutes=1))) == ["run0"]
    assert ids(storage.list_runs(limit=1)) == ["run3"]
    assert storage.list_runs()[0].log is None  # listings stay light
    assert storage.get_run("run3").duration == 5.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "done"}, r"unknown run status 'done'; use one of queued, running, succeeded"),
        ({"limit": 0}, r"limit must be a whole number from 1 to 10000, got 0"),
        ({"limit": "5"}, r"limit must be a whole number from 1 to 10000, got '5'"),
        ({"since": datetime(2026, 1, 1)}, r"list_runs: since 2026-01-01T00:00:00 has no timezone"),
    ],
)
def test_bad_run_queries_are_refused(
    storage: DatabaseStorage, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        storage.list_runs(**kwargs)  # type: ignore[arg-type]


def test_unknown_runs_raise_not_found(storage: DatabaseStorage) -> None:
    for call in (
        lambda: storage.get_run("nope"),
        lambda: storage.append_run_log("nope", "x"),
        lambda: storage.finish_run("nope", "failed", finished_at=T0, error=None),
        lambda: storage.request_cancel("nope"),
        lambda: storage.cancel_requested("nope"),
    ):
        with pytest.raises(NotFoundError, match=r"run 'nope' does not exist; list_runs\(\)"):
            call()


def test_claim_run_gives_each_tick_once(storage: DatabaseStorage) -> None:
    claimed = _claim(storage, T0)
    assert claimed is not None
    assert claimed.status is RunStatus.QUEUED and claimed.scheduled_time == T0
    assert (claimed.scheduler_name, claimed.trigger_name, claimed.instance_id) == ("s", "t", "i1")
    assert _claim(storage, T0, instance_id="i2") is None
    assert _claim(storage, T0 + timedelta(hours=1)) is not None
    assert storage.latest_scheduled_time("s") == T0 + timedelta(hours=1)
    assert storage.latest_scheduled_time("other") is None
    assert storage.active_runs("s")[0].run_id == claimed.run_id
    assert len(storage.active_runs()) == 2
    assert storage.active_runs("other") == []


def test_a_claim_retried_with_its_run_id_gets_its_row_back(storage: DatabaseStorage) -> None:
    """A claim whose answer was lost after COMMIT is adopted by its retry, and only by it."""
    first = _claim(storage, T0, run_id="claim-1", variables={"x": 1})
    assert first is not None and first.run_id == "claim-1"
    again = _claim(storage, T0, run_id="claim-1", variables={"x": 1})
    assert again is not None
    assert again.to_dict() == first.to_dict()
    assert _claim(storage, T0, run_id="claim-2") is None  # same instance, another claim
    assert _claim(storage, T0, instance_id="i2") is None  # another instance
    assert _claim(storage, T0, instance_id="i2", run_id="claim-1") is not None  # same claim
    assert [r.run_id for r in storage.list_runs()] == ["claim-1"]
    assert storage.mark_running("claim-1", worker="h:1")
    assert _claim(storage, T0, run_id="claim-1") is not None  # running: still its claim
    assert storage.finish_run("claim-1", RunStatus.SUCCEEDED, finished_at=T0, error=None)
    assert _claim(storage, T0, run_id="claim-1") is None  # the tick is done
    assert storage.get_run("claim-1").status is RunStatus.SUCCEEDED
    skipped = storage.record_skipped_run(
        "s", T0 + timedelta(hours=1), "missed", pipeline_name="p", trigger_name="t",
        instance_id="i1", now=T0,
    )  # fmt: skip
    assert skipped is not None
    assert _claim(storage, T0 + timedelta(hours=1), run_id=skipped.run_id) is None
    assert storage.get_run(skipped.run_id).status is RunStatus.SKIPPED


def test_a_claim_id_used_by_another_run_is_refused(storage: DatabaseStorage) -> None:
    assert _claim(storage, T0, run_id="claim-1") is not None
    with pytest.raises(
        ValidationError, match=r"claim_run: run id 'claim-1' is already used by another run"
    ):
        _claim(storage, T0 + timedelta(hours=1), run_id="claim-1")
    assert storage.latest_scheduled_time("s") == T0


def test_skipped_tick_holds_the_tick(storage: DatabaseStorage) -> None:
    skipped = storage.record_skipped_run(
        "s", T0, "overlap: run x still running", pipeline_name="p", trigger_name="t",
        instance_id="i1", now=T0 + timedelta(seconds=3),
    )  # fmt: skip
    assert skipped is not None
    assert skipped.status is RunStatus.SKIPPED
    assert skipped.error == "overlap: run x still running"
    assert skipped.finished_at == T0 + timedelta(seconds=3)
    assert _claim(storage, T0) is None
    assert storage.record_skipped_run(
        "s", T0, "again", pipeline_name="p", trigger_name="t", instance_id="i2", now=T0
    ) is None  # fmt: skip
    assert storage.active_runs("s") == []


def test_claims_from_many_connections_at_once(open_storage: OpenStorage) -> None:
    storages = [open_storage() for _ in range(6)]
    barrier = threading.Barrier(len(storages))
    won: list[RunRecord] = []
    failures: list[BaseException] = []

    def claim(index: int) -> None:
        barrier.wait()
        try:
            for hour in range(5):
                tick = T0 + timedelta(hours=hour)
                record = _claim(storages[index], tick, instance_id=f"i{index}")
                if record is not None:
                    won.append(record)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(storages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(r.scheduled_time for r in won if r.scheduled_time) == [
        T0 + timedelta(hours=hour) for hour in range(5)
    ]


def test_recorder_adopts_a_claimed_run(storage: DatabaseStorage, tmp_path: Path) -> None:
    _example(storage, "p")
    claimed = _claim(storage, T0, variables={"x": 1})
    assert claimed is not None
    result = storage.run_pipeline(
        "p",
        run_id=claimed.run_id,
        scheduler_name="s",
        trigger_name="t",
        scheduled_time=T0,
        output_dir=tmp_path,
        instance_id="i1",
    )
    runs = storage.list_runs()
    assert [r.run_id for r in runs] == [claimed.run_id]
    run = storage.get_run(claimed.run_id)
    assert run.status is RunStatus.SUCCEEDED and result.succeeded
    assert (run.scheduler_name, run.trigger_name, run.instance_id) == ("s", "t", "i1")
    assert run.scheduled_time == T0
    assert len(run.blocs) == 4


def test_heartbeats_and_abandoned_runs(storage: DatabaseStorage) -> None:
    storage.heartbeat("alive", T0, hostname="h1", pid=10, info={"schedulers": ["s"]})
    storage.heartbeat("dead", T0 - timedelta(minutes=10), hostname="h2", pid=11)
    storage.heartbeat("alive", T0 + timedelta(seconds=30))
    instances = {i.instance_id: i for i in storage.list_instances()}
    assert instances["alive"].last_seen == T0 + timedelta(seconds=30)
    assert instances["alive"].started_at == T0
    assert (instances["alive"].hostname, instances["alive"].pid) == ("h1", 10)
    assert [i.instance_id for i in storage.list_instances(seen_since=T0)] == ["alive"]

    claims = {
        name: _claim(storage, T0 + timedelta(minutes=n), instance_id=instance, now=started)
        for n, (name, instance, started) in enumerate(
            [
                ("alive", "alive", T0),
                ("dead", "dead", T0),
                ("vanished_old", "vanished", T0 - timedelta(minutes=10)),
                ("vanished_new", "vanished", T0),
                ("manual", None, T0 - timedelta(days=1)),
            ]
        )
    }
    ids = {name: record.run_id for name, record in claims.items() if record}
    marked = storage.mark_abandoned_runs(T0 + timedelta(minutes=1), timedelta(minutes=2))
    assert marked == sorted([ids["dead"], ids["vanished_old"]])
    dead = storage.get_run(ids["dead"])
    assert dead.status is RunStatus.ABANDONED
    assert dead.finished_at == T0 + timedelta(minutes=1)
    assert dead.error is not None and "sent no heartbeat for 120s" in dead.error
    assert dead.log is not None and "abandoned" in dead.log
    for name in ("alive", "vanished_new", "manual"):
        assert storage.get_run(ids[name]).status is RunStatus.QUEUED
    assert storage.mark_abandoned_runs(T0 + timedelta(minutes=1), timedelta(minutes=2)) == []
    storage.remove_instance("dead")
    storage.remove_instance("never-seen")
    assert [i.instance_id for i in storage.list_instances()] == ["alive"]
    with pytest.raises(ValidationError, match=r"stale_after must be a positive timedelta"):
        storage.mark_abandoned_runs(T0, timedelta(0))


def test_cancel_requests(storage: DatabaseStorage) -> None:
    running = _claim(storage, T0)
    assert running is not None and storage.mark_running(running.run_id)
    assert storage.cancel_requested(running.run_id) is False
    assert storage.runs_to_cancel("i1") == []
    asked = storage.request_cancel(running.run_id, by="api:ops")
    assert asked.status is RunStatus.RUNNING and asked.cancelled_by == "api:ops"
    assert asked.cancel_requested and asked.cancel_requested_at is not None
    assert storage.cancel_requested(running.run_id) is True
    assert storage.runs_to_cancel("i1") == [running.run_id] and storage.runs_to_cancel("i2") == []
    assert storage.request_cancel(running.run_id, by="cli").cancelled_by == "api:ops"  # first
    storage.finish_run(running.run_id, RunStatus.CANCELLED, finished_at=T0, error="cancelled")
    assert storage.runs_to_cancel("i1") == []
    with pytest.raises(
        RunFinishedError, match=rf"run {running.run_id} already finished \(cancelled\)"
    ):
        storage.request_cancel(running.run_id)
    queued = storage.create_run(None, "p", owner_id="i1", started_by="api")
    cancelled = storage.request_cancel(queued.run_id, by="cli")
    assert cancelled.status is RunStatus.CANCELLED and cancelled.finished_at is not None
    assert cancelled.error == "cancelled by cli before it started"
    assert not storage.mark_running(queued.run_id)  # its claimer must not start it


def test_naive_times_are_refused(storage: DatabaseStorage) -> None:
    with pytest.raises(
        ValidationError, match=r"scheduled_time 2026-05-15T10:00:00 has no timezone"
    ):
        storage.claim_run(
            "s", T0.replace(tzinfo=None), pipeline_name="p", trigger_name=None,
            instance_id=None, now=T0,
        )  # fmt: skip
    with pytest.raises(ValidationError, match=r"now 2026-05-15T10:00:00 has no timezone"):
        storage.heartbeat("i", T0.replace(tzinfo=None))
    assert storage.list_runs() == []


def test_run_log_appends(storage: DatabaseStorage) -> None:
    storage.start_run("r", "p", started_at=T0)
    storage.append_run_log("r", "one\n")
    storage.append_run_log("r", "'); DROP TABLE th2etl_runs; --\n")
    assert storage.get_run("r").log == "one\n'); DROP TABLE th2etl_runs; --\n"
