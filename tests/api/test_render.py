"""The API renders storage records straight to JSON (``json_default``): byte for byte what their
``to_dict()`` renders, for every kind of record and value."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from th2etl.api.deps import render
from th2etl.logical_time import LogicalTime
from th2etl.pipelines.result import BlocStatus, RunStatus
from th2etl.scheduler.policies import MissedTickPolicy, OverlapPolicy
from th2etl.storage.records import (
    BlocRecord,
    BlocRunRecord,
    InstanceRecord,
    PipelineRecord,
    Record,
    RunRecord,
    SchedulerRecord,
    TriggerRecord,
    json_default,
)

T0 = datetime(2026, 3, 29, 0, 30, 15, 123456, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


def _records() -> list[Record]:
    bloc_run = BlocRunRecord(
        "r1", "load", "csv_loader", 0, BlocStatus.FAILED, 2, 10, 0, 0.25, T0, None,
        "ValueError", "bad row é", "Traceback ...",
    )  # fmt: skip
    return [
        BlocRecord("load", "csv_loader", {"file_path": "a.csv", "n": [1, 2.5, None]}, "", T0, T0),
        PipelineRecord("p", [["load"], ["double", "triple"]], "daily", T0, T0, timeout=30.0),
        TriggerRecord("t", None, "0 2 * * *", "Europe/Paris", "", T0, T0),
        SchedulerRecord(
            "s",
            "p",
            "t",
            True,
            "",
            T0,
            T0,
            variables={"region": "eu"},
            missed=MissedTickPolicy.ALL,
            overlap=OverlapPolicy.ALLOW,
            max_active_runs=2,
            start_date=T0.astimezone(PARIS),
            after_pipelines=["up"],
        ),
        InstanceRecord("api-1", T0, T0 + timedelta(seconds=3), "host", 42, {"runs": ["r1"]}),
        RunRecord(
            "r1",
            "p",
            RunStatus.RUNNING,
            T0,
            None,
            scheduler_name="s",
            trigger_name="t",
            scheduled_time=T0,
            variables={"x": 1},
            owner_id="api-1",
            started_by="api",
            blocs=[bloc_run],
            logical_time=LogicalTime(T0, T0 - timedelta(days=1), T0, "UTC"),
        ),
        RunRecord(
            "r2",
            "p",
            RunStatus.CANCELLED,
            T0,
            T0 + timedelta(seconds=1.5),
            cancel_requested=True,
            cancelled_by="api",
            cancel_requested_at=T0,
            definition={"pipeline": {"name": "p"}},
            log="line\n",
        ),
    ]


@pytest.mark.parametrize("record", _records(), ids=lambda record: type(record).__name__)
def test_a_record_renders_as_its_to_dict(record: Record) -> None:
    assert render(record) == render(record.to_dict())
    assert render([record, {"wrapped": record}]) == render(
        [record.to_dict(), {"wrapped": record.to_dict()}]
    )


def test_json_default_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError, match=r"set is not JSON serializable"):
        json.dumps({1, 2}, default=json_default)
