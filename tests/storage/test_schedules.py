"""Triggers as reusable crons, schedulers with their options, the schedule defaults, and
after_pipelines dependencies with cycle refusal: on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from th2etl.exceptions import InUseError, ValidationError
from th2etl.scheduler import MissedTickPolicy, OverlapPolicy
from th2etl.scheduler.options import ScheduleDefaults
from th2etl.storage import DatabaseStorage


@pytest.fixture
def defined(storage: DatabaseStorage) -> DatabaseStorage:
    for name in ("a", "b", "c"):
        storage.create_bloc(f"{name}_bloc", "example_transformer")
        storage.create_pipeline(name, [[f"{name}_bloc"]])
    storage.create_trigger("nightly", cron_expression="0 2 * * *", timezone="Europe/Paris")
    return storage


def test_a_trigger_is_a_reusable_cron_and_its_pipeline_a_label(defined: DatabaseStorage) -> None:
    assert defined.get_trigger("nightly").pipeline_name is None
    # The seed's positional form keeps working, and its label names no existing pipeline.
    seed = defined.create_trigger("hourly", "not_yet_created", "0 * * * *")
    assert seed.pipeline_name == "not_yet_created"
    # Any scheduler may use any trigger, whatever its label says.
    defined.create_scheduler("a_hourly", "a", "hourly")
    defined.create_scheduler("b_hourly", "b", "hourly")
    assert defined.update_trigger("hourly", pipeline_name="b").pipeline_name == "b"
    with pytest.raises(ValidationError, match="cron_expression must be a non-empty string"):
        defined.create_trigger("broken")


def test_options_are_stored_read_back_changed_and_reset(defined: DatabaseStorage) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    created = defined.create_scheduler(
        "daily",
        "a",
        "nightly",
        variables={"region": "north"},
        missed="all",
        overlap="allow",
        max_active_runs=2,
        timeout=3600,
        start_date=start,
    )
    read = defined.get_scheduler("daily")
    assert read == created
    assert (read.missed, read.overlap, read.max_active_runs, read.timeout) == (
        MissedTickPolicy.ALL,
        OverlapPolicy.ALLOW,
        2,
        3600.0,
    )
    assert read.start_date == start and read.end_date is None
    assert read.to_dict()["missed"] == "all"
    changed = defined.update_scheduler("daily", timeout=60, reset=["missed", "variables"])
    assert (changed.timeout, changed.missed, changed.variables) == (60.0, None, {})
    assert changed.overlap is OverlapPolicy.ALLOW and changed.max_active_runs == 2
    assert defined.get_scheduler("daily") == changed


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_active_runs": 0}, r"max_active_runs must be a whole number from 1 to 10000, got 0"),
        ({"timeout": -5}, r"timeout must be a number of seconds more than 0 and at most 604800"),
        ({"timeout": float("nan")}, r"timeout must be a number of seconds .* got nan"),
        ({"missed": "sometimes"}, r"missed 'sometimes' is not one of 'skip', 'latest', 'all'"),
        ({"overlap": "queue"}, r"overlap 'queue' is not one of 'skip', 'allow'"),
        ({"variables": ["x"]}, r"variables must be an object with string keys"),
        ({"start_date": datetime(2026, 1, 1)}, r"start_date must be a timezone-aware date-time"),
        (
            {
                "start_date": datetime(2026, 2, 1, tzinfo=UTC),
                "end_date": datetime(2026, 1, 1, tzinfo=UTC),
            },
            r"start_date 2026-02-01T00:00:00\+00:00 is not before end_date 2026-01-01",
        ),
    ],
)
def test_options_out_of_range_are_refused_before_storing(
    defined: DatabaseStorage, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=rf"scheduler 'daily': {message}"):
        defined.create_scheduler("daily", "a", "nightly", **options)  # type: ignore[arg-type]
    assert defined.list_schedulers() == []
    defined.create_scheduler("daily", "a", "nightly", timeout=10)
    with pytest.raises(ValidationError, match=rf"scheduler 'daily': {message}"):
        defined.update_scheduler("daily", **options)  # type: ignore[arg-type]
    assert defined.get_scheduler("daily").timeout == 10


def test_schedule_defaults_are_one_stored_row(defined: DatabaseStorage) -> None:
    assert defined.get_schedule_defaults() == ScheduleDefaults()
    revision = defined.revision()
    stored = defined.set_schedule_defaults(missed="skip", max_active_runs=3)
    assert stored == ScheduleDefaults(missed=MissedTickPolicy.SKIP, max_active_runs=3)
    assert defined.get_schedule_defaults() == stored
    assert defined.revision() > revision  # running managers reload
    with pytest.raises(ValidationError, match="schedule defaults: timeout must be a number"):
        defined.set_schedule_defaults(timeout=0)
    assert defined.get_schedule_defaults() == stored


def test_dependencies_need_existing_pipelines_and_exactly_one_source(
    defined: DatabaseStorage,
) -> None:
    with pytest.raises(ValidationError, match=r"give either trigger_name .* not neither"):
        defined.create_scheduler("b_after", "b")
    with pytest.raises(ValidationError, match=r"give either trigger_name .* not both"):
        defined.create_scheduler("b_after", "b", "nightly", after_pipelines=["a"])
    with pytest.raises(ValidationError, match="pipeline 'nope' does not exist; create it first"):
        defined.create_scheduler("b_after", "b", after_pipelines=["nope"])
    after = defined.create_scheduler("b_after", "b", after_pipelines=["a"])
    assert (after.trigger_name, after.after_pipelines) == (None, ["a"])
    assert defined.get_scheduler("b_after") == after
    with pytest.raises(InUseError, match=r"pipeline 'a' is awaited by scheduler\(s\) 'b_after'"):
        defined.delete_pipeline("a")
    # A trigger replaces the dependencies, and the other way round.
    assert defined.update_scheduler("b_after", trigger_name="nightly").after_pipelines == []
    back = defined.update_scheduler("b_after", after_pipelines=["a", "c"])
    assert (back.trigger_name, back.after_pipelines) == (None, ["a", "c"])


def test_a_dependency_cycle_is_refused_naming_it(defined: DatabaseStorage) -> None:
    defined.create_scheduler("b_after_a", "b", after_pipelines=["a"])
    defined.create_scheduler("c_after_b", "c", after_pipelines=["b"])
    with pytest.raises(
        ValidationError,
        match=r"scheduler 'a_after_c': after_pipelines would close a cycle of pipeline "
        r"dependencies: c -> a -> b -> c \(scheduler 'b_after_a' runs 'b' after 'a'; "
        r"scheduler 'c_after_b' runs 'c' after 'b'; scheduler this one would run 'a' after "
        r"'c'\); nothing was stored",
    ):
        defined.create_scheduler("a_after_c", "a", after_pipelines=["c"])
    with pytest.raises(ValidationError, match="cycle of pipeline dependencies: a -> a"):
        defined.create_scheduler("a_after_a", "a", after_pipelines=["a"])
    defined.create_scheduler("a_nightly", "a", "nightly")
    with pytest.raises(ValidationError, match="cycle of pipeline dependencies: c -> a -> b -> c"):
        defined.update_scheduler("a_nightly", after_pipelines=["c"])
    assert defined.get_scheduler("a_nightly").trigger_name == "nightly"
    assert sorted(s.name for s in defined.list_schedulers()) == [
        "a_nightly",
        "b_after_a",
        "c_after_b",
    ]


def test_options_round_trip_through_a_project_file(defined: DatabaseStorage) -> None:
    from th2etl.projects import ProjectFile, apply_plan, export_project, make_plan

    text = """
project = "sales"

[schedulers.orders_nightly]
pipeline_name = "a"
trigger_name = "nightly"
missed = "all"
max_active_runs = 2
start_date = 2026-03-01T00:00:00+01:00

[schedulers.orders_nightly.variables]
region = "north"

[schedulers.report_after]
pipeline_name = "b"
after_pipelines = ["a"]
"""
    project_file = ProjectFile.parse(text, "sales.toml")
    apply_plan(defined, make_plan(defined, project_file), project_file)
    stored = defined.get_scheduler("orders_nightly")
    assert (stored.missed, stored.max_active_runs, stored.variables) == (
        MissedTickPolicy.ALL,
        2,
        {"region": "north"},
    )
    assert stored.start_date == datetime(2026, 2, 28, 23, tzinfo=UTC)
    exported = export_project(defined, project="sales")
    assert "start_date = 2026-02-28T23:00:00+00:00" in exported
    assert "variables = {}" not in exported
    again = make_plan(defined, ProjectFile.parse(exported, "exported.toml"))
    # Only the definitions made outside the file would be adopted: no value differs.
    assert {change.fields for change in again.changes} == {("project",)}
