"""The storage contract for definitions, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from th2etl.blocs import ConfigField, TransformerBloc, register_bloc
from th2etl.blocs.registry import unregister_bloc
from th2etl.exceptions import (
    AlreadyExistsError,
    CronError,
    InUseError,
    NotFoundError,
    ValidationError,
)
from th2etl.pipelines import RunContext
from th2etl.storage import DatabaseStorage, build_pipeline
from th2etl.types import Rows

from .conftest import OpenStorage


def _loader(storage: DatabaseStorage, name: str = "load") -> None:
    storage.create_bloc(name, "csv_loader", config={"file_path": "data.csv"})


def _linear(storage: DatabaseStorage, pipeline: str = "daily") -> None:
    _loader(storage)
    storage.create_bloc("double", "example_transformer", config={"factor": 2})
    storage.create_pipeline(pipeline, stages=[["load"], ["double"]])


def _snapshot(storage: DatabaseStorage) -> tuple[Any, ...]:
    return (
        storage.revision(),
        [b.to_dict() for b in storage.list_blocs()],
        [p.to_dict() for p in storage.list_pipelines()],
        [t.to_dict() for t in storage.list_triggers()],
        [s.to_dict() for s in storage.list_schedulers()],
    )


@pytest.fixture
def any_bloc_type() -> Iterator[None]:
    """A bloc type with a config key of any type."""

    @register_bloc
    class AnyBloc(TransformerBloc):
        bloc_type = "storage_test_any"
        config_fields = (ConfigField("payload", "any"),)

        def run(self, context: RunContext, rows: Rows) -> Rows:
            return rows

    yield
    unregister_bloc("storage_test_any")


# --- blocs --------------------------------------------------------------------------------


def test_bloc_round_trip(storage: DatabaseStorage) -> None:
    created = storage.create_bloc(
        "load", "csv_loader", config={"file_path": "data.csv"}, description="raw sales"
    )
    got = storage.get_bloc("load")
    assert got == created
    # Stored as given: the type's defaults (delimiter, encoding) are not filled in.
    assert got.config == {"file_path": "data.csv"}
    assert got.description == "raw sales"
    assert got.created_at.tzinfo is not None and got.created_at == got.updated_at
    assert json.loads(json.dumps(got.to_dict()))["created_at"] == got.created_at.isoformat()
    assert [b.name for b in storage.list_blocs()] == ["load"]
    assert storage.list_blocs(bloc_type="example_transformer") == []


def test_update_bloc_changes_only_what_is_given(storage: DatabaseStorage) -> None:
    created = storage.create_bloc("double", "example_transformer", config={"factor": 2})
    updated = storage.update_bloc("double", config={"factor": 5})
    assert updated.config == {"factor": 5}
    assert updated.bloc_type == "example_transformer"
    assert updated.created_at == created.created_at
    assert updated.updated_at >= created.updated_at
    assert storage.get_bloc("double") == updated
    retyped = storage.update_bloc("double", bloc_type="csv_loader", config={"file_path": "x"})
    assert storage.get_bloc("double") == retyped
    assert storage.update_bloc("double", description="now a loader").config == {"file_path": "x"}


def test_delete_bloc(storage: DatabaseStorage) -> None:
    _loader(storage)
    storage.delete_bloc("load")
    assert storage.list_blocs() == []
    with pytest.raises(NotFoundError, match=r"bloc 'load' does not exist; list_blocs\(\)"):
        storage.delete_bloc("load")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", r"bloc name must be a non-empty string, got ''"),
        ("a b", r"bloc name 'a b' has characters that are not allowed"),
        ("x" * 129, r"is 129 characters long; use at most 128"),
        (42, r"bloc name must be a non-empty string, got 42"),
        ("x');DROP TABLE th2etl_blocs;--", r"has characters that are not allowed"),
    ],
)
def test_bad_bloc_names_are_refused(storage: DatabaseStorage, name: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        storage.create_bloc(name, "csv_loader", config={"file_path": "x"})
    with pytest.raises(ValidationError, match=message):
        storage.get_bloc(name)
    assert storage.list_blocs() == []


def test_name_of_128_characters_is_fine(storage: DatabaseStorage) -> None:
    name = "a.b-c_" + "x" * 122
    storage.create_bloc(name, "example_transformer")
    assert storage.get_bloc(name).name == name


@pytest.mark.parametrize(
    ("bloc_type", "config", "exception", "message"),
    [
        ("nope", {}, ValidationError, r"bloc 'b': unknown bloc_type 'nope'; known types: .*"),
        ("", {}, ValidationError, r"bloc_type must be a non-empty string"),
        ("csv_loader", {}, ValidationError, r"missing required config key 'file_path'"),
        ("csv_loader", [1], ValidationError, r"config must be an object \(dict\), got list"),
        (
            "csv_loader",
            {"file_path": "x", "colour": "red"},
            ValidationError,
            r"unknown config key 'colour'; allowed keys: ",
        ),
        (
            "example_transformer",
            {"factor": "many"},
            ValidationError,
            r"config key 'factor' must be",
        ),
        (
            "storage_test_any",
            {"payload": {"day": datetime(2026, 1, 1)}},
            ValidationError,
            r"bloc 'b' \(storage_test_any\): config cannot be stored as JSON \(Object of "
            r"type datetime is not JSON serializable\); use strings, numbers",
        ),
        (
            "example_transformer",
            {"factor": float("nan")},
            ValidationError,
            r"config cannot be stored as JSON",
        ),
    ],
)
@pytest.mark.usefixtures("any_bloc_type")
def test_bad_bloc_definitions_are_refused(
    storage: DatabaseStorage, bloc_type: str, config: Any, exception: type, message: str
) -> None:
    before = _snapshot(storage)
    with pytest.raises(exception, match=message):
        storage.create_bloc("b", bloc_type, config=config)
    assert _snapshot(storage) == before


def test_description_must_be_text(storage: DatabaseStorage) -> None:
    with pytest.raises(ValidationError, match=r"bloc 'b': description must be a string, got int"):
        storage.create_bloc("b", "example_transformer", description=3)  # type: ignore[arg-type]


def test_duplicate_bloc_is_refused(storage: DatabaseStorage) -> None:
    _loader(storage)
    before = _snapshot(storage)
    with pytest.raises(AlreadyExistsError, match=r"bloc 'load' already exists; pick another"):
        storage.create_bloc("load", "example_transformer")
    assert _snapshot(storage) == before


def test_unknown_names_raise_not_found(storage: DatabaseStorage) -> None:
    for kind in ("bloc", "pipeline", "trigger", "scheduler"):
        with pytest.raises(NotFoundError, match=rf"{kind} 'ghost' does not exist"):
            getattr(storage, f"get_{kind}")("ghost")
        with pytest.raises(NotFoundError, match=rf"{kind} 'ghost' does not exist"):
            getattr(storage, f"delete_{kind}")("ghost")
        with pytest.raises(NotFoundError, match=rf"{kind} 'ghost' does not exist"):
            getattr(storage, f"update_{kind}")("ghost", description="x")


def test_sql_injection_lookalikes_are_stored_verbatim(storage: DatabaseStorage) -> None:
    evil = "x'); DROP TABLE th2etl_blocs; --"
    config = {"file_path": evil, "delimiter": ";", "types": {evil: "str", '"; --': "int"}}
    storage.create_bloc("load", "csv_loader", config=config, description=evil)
    storage.create_bloc("x--DROP.TABLE-th2etl_blocs", "example_transformer")
    storage.create_pipeline("p", stages=[["load"]], description="1; DELETE FROM th2etl_runs")
    storage.create_trigger("t", "p", "0 * * * *", description="' OR '1'='1")
    assert storage.get_trigger("t").description == "' OR '1'='1"
    assert [b.name for b in storage.list_blocs()] == ["load", "x--DROP.TABLE-th2etl_blocs"]
    # Filters are parameters too: an injection-looking value matches nothing.
    assert storage.list_blocs(bloc_type="' OR '1'='1") == []
    assert storage.list_triggers(pipeline_name="p' OR 1=1 --") == []
    assert storage.list_runs(pipeline_name="x'); DELETE FROM th2etl_runs; --") == []
    assert len(storage.list_blocs()) == 2


def test_update_bloc_refusals_change_nothing(storage: DatabaseStorage) -> None:
    _linear(storage)
    storage.create_bloc("export", "csv_exporter", config={"file_path": "o.csv"})
    storage.create_pipeline("two", stages=[["load"], ["double"], ["export"]])
    before = _snapshot(storage)
    with pytest.raises(ValidationError, match=r"missing required config key 'file_path'"):
        storage.update_bloc("load", config={})
    with pytest.raises(ValidationError, match=r"unknown bloc_type 'zzz'"):
        storage.update_bloc("load", bloc_type="zzz")
    # A source_bloc that is not in pipeline 'two' would break it:
    with pytest.raises(
        ValidationError, match=r"bloc 'export' reads source_bloc 'ghost', which is not in"
    ):
        storage.update_bloc("export", config={"file_path": "o.csv", "source_bloc": "ghost"})
    assert _snapshot(storage) == before
    storage.update_bloc("export", config={"file_path": "o.csv", "source_bloc": "load"})


def test_delete_bloc_in_use_lists_the_pipelines(storage: DatabaseStorage) -> None:
    _linear(storage, "daily")
    storage.create_pipeline("again", stages=[["load"]])
    before = _snapshot(storage)
    with pytest.raises(
        InUseError, match=r"bloc 'load' is used by pipeline\(s\) 'again', 'daily'; remove it"
    ):
        storage.delete_bloc("load")
    assert _snapshot(storage) == before


# --- pipelines ----------------------------------------------------------------------------


def test_pipeline_round_trip(storage: DatabaseStorage) -> None:
    _loader(storage)
    storage.create_bloc("a", "example_transformer", config={"factor": 2})
    storage.create_bloc("b", "example_transformer", config={"factor": 3})
    storage.create_bloc("out", "csv_exporter", config={"file_path": "o.csv", "source_bloc": "a"})
    stages = [["load"], ["a", "b"], ["out"]]
    created = storage.create_pipeline("daily", stages=stages, description="every day")
    assert storage.get_pipeline("daily") == created
    assert created.stages == stages
    assert created.bloc_names == ["load", "a", "b", "out"]
    assert [p.name for p in storage.list_pipelines()] == ["daily"]
    record, blocs = storage.get_pipeline_definition("daily")
    assert record == created
    assert [b.name for b in blocs] == ["load", "a", "b", "out"]
    assert storage.build_pipeline("daily").stage_names == stages


def test_update_and_delete_pipeline(storage: DatabaseStorage) -> None:
    _linear(storage)
    updated = storage.update_pipeline("daily", stages=[["load"]], description="short")
    assert storage.get_pipeline("daily") == updated
    assert updated.stages == [["load"]]
    storage.delete_bloc("double")  # no longer used
    storage.update_pipeline("daily", description="still short")
    assert storage.get_pipeline("daily").stages == [["load"]]
    storage.delete_pipeline("daily")
    assert storage.list_pipelines() == []
    storage.delete_bloc("load")  # the pipeline's bloc rows went with it


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([], r"pipeline 'p' has no stages; give at least one stage"),
        ("load", r"stages must be a list of stages, each a list of bloc names"),
        ([["load"], []], r"pipeline 'p', stage 2 is empty"),
        ([["load"], "double"], r"stage 2: a stage must be a list of bloc names"),
        ([["load"], ["load"]], r"bloc 'load' is already in stage 1"),
        ([["load", 3]], r"expected a bloc \(or a bloc name\), got 3"),
        ([["load"], ["ghost", "spook"]], r"names bloc\(s\) 'ghost', 'spook', which do not exist"),
        ([["bad name"]], r"bloc name 'bad name' has characters that are not allowed"),
        (
            [["load", "export"]],
            r"bloc 'export' reads source_bloc 'load', which is not in an earlier stage of "
            r"pipeline 'p' \('load' is in the same stage",
        ),
    ],
)
def test_bad_stages_are_refused(storage: DatabaseStorage, stages: Any, message: str) -> None:
    _loader(storage)
    storage.create_bloc("double", "example_transformer")
    storage.create_bloc(
        "export", "csv_exporter", config={"file_path": "o.csv", "source_bloc": "load"}
    )
    before = _snapshot(storage)
    with pytest.raises(ValidationError, match=message):
        storage.create_pipeline("p", stages=stages)
    assert _snapshot(storage) == before
    storage.create_pipeline("p", stages=[["load"]])
    with pytest.raises(ValidationError, match=message):
        storage.update_pipeline("p", stages=stages)
    assert storage.get_pipeline("p").stages == [["load"]]


def test_duplicate_pipeline_is_refused(storage: DatabaseStorage) -> None:
    _linear(storage)
    with pytest.raises(AlreadyExistsError, match=r"pipeline 'daily' already exists"):
        storage.create_pipeline("daily", stages=[["load"]])
    assert storage.get_pipeline("daily").stages == [["load"], ["double"]]


def test_delete_pipeline_in_use_lists_the_schedulers(storage: DatabaseStorage) -> None:
    _linear(storage)
    storage.create_trigger("hourly", "daily", "0 * * * *")
    storage.create_scheduler("s2", "daily", "hourly")
    storage.create_scheduler("s1", "daily", "hourly")
    with pytest.raises(
        InUseError, match=r"pipeline 'daily' is used by scheduler\(s\) 's1', 's2'; delete them"
    ):
        storage.delete_pipeline("daily")
    with pytest.raises(InUseError, match=r"trigger 'hourly' is used by scheduler\(s\) 's1', 's2'"):
        storage.delete_trigger("hourly")
    storage.delete_scheduler("s1")
    storage.delete_scheduler("s2")
    storage.delete_trigger("hourly")
    storage.delete_pipeline("daily")


# --- triggers and schedulers --------------------------------------------------------------


def test_trigger_round_trip_and_quickstart_order(storage: DatabaseStorage) -> None:
    # The seed's quickstart creates the trigger before its pipeline.
    created = storage.create_trigger("every_hour", "example_pipeline", "0 * * * *")
    assert created.timezone == "UTC"
    assert storage.get_trigger("every_hour") == created
    paris = storage.create_trigger("morning", "p", "30 7 * * 1-5", timezone="Europe/Paris")
    assert storage.list_triggers(pipeline_name="p") == [paris]
    updated = storage.update_trigger("morning", cron_expression="@daily")
    assert (updated.cron_expression, updated.timezone) == ("@daily", "Europe/Paris")
    assert storage.get_trigger("morning") == updated
    storage.delete_trigger("morning")
    assert [t.name for t in storage.list_triggers()] == ["every_hour"]


@pytest.mark.parametrize(
    ("cron", "timezone", "message"),
    [
        ("61 * * * *", "UTC", r"trigger 't': .*'61 \* \* \* \*'.*minute 61"),
        ("* * *", "UTC", r"trigger 't': .*'\* \* \*'"),
        ("", "UTC", r"cron_expression must be a non-empty string such as '0 \* \* \* \*'"),
        ("0 * * * *", "Mars/Olympus", r"unknown timezone 'Mars/Olympus'; use an IANA name"),
        ("0 * * * *", 5, r"timezone must be an IANA name such as 'UTC'"),
    ],
)
def test_bad_triggers_are_refused(
    storage: DatabaseStorage, cron: str, timezone: Any, message: str
) -> None:
    with pytest.raises(CronError, match=message):
        storage.create_trigger("t", "p", cron, timezone=timezone)
    assert storage.list_triggers() == []
    storage.create_trigger("t", "p", "0 * * * *")
    with pytest.raises(CronError, match=message):
        storage.update_trigger("t", cron_expression=cron, timezone=timezone)
    assert storage.get_trigger("t").cron_expression == "0 * * * *"


def test_trigger_pipeline_name_must_be_a_name(storage: DatabaseStorage) -> None:
    with pytest.raises(ValidationError, match=r"pipeline name 'a b' has characters"):
        storage.create_trigger("t", "a b", "0 * * * *")


def test_scheduler_round_trip(storage: DatabaseStorage) -> None:
    _linear(storage)
    storage.create_trigger("hourly", "daily", "0 * * * *")
    created = storage.create_scheduler("s", "daily", "hourly")
    assert created.enabled is True
    assert storage.get_scheduler("s") == created
    off = storage.update_scheduler("s", enabled=False)
    assert storage.get_scheduler("s") == off
    assert storage.list_schedulers(enabled=True) == []
    assert storage.list_schedulers(enabled=False, pipeline_name="daily") == [off]
    assert storage.list_schedulers(pipeline_name="other") == []


def test_scheduler_targets_must_exist(storage: DatabaseStorage) -> None:
    _linear(storage)
    storage.create_trigger("hourly", "daily", "0 * * * *")
    before = _snapshot(storage)
    with pytest.raises(
        ValidationError, match=r"scheduler 's': pipeline 'nope' does not exist; create it first"
    ):
        storage.create_scheduler("s", "nope", "hourly")
    with pytest.raises(ValidationError, match=r"scheduler 's': trigger 'nope' does not exist"):
        storage.create_scheduler("s", "daily", "nope")
    with pytest.raises(ValidationError, match=r"scheduler 's': pipeline must be a name, got 5"):
        storage.create_scheduler("s", 5, "hourly")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"pipeline name 'no pe' has characters"):
        storage.create_scheduler("s", "no pe", "hourly")
    with pytest.raises(ValidationError, match=r"enabled must be True or False, got 'yes'"):
        storage.create_scheduler("s", "daily", "hourly", enabled="yes")  # type: ignore[arg-type]
    assert _snapshot(storage) == before
    storage.create_scheduler("s", "daily", "hourly")
    with pytest.raises(ValidationError, match=r"scheduler 's': trigger 'nope' does not exist"):
        storage.update_scheduler("s", trigger_name="nope")
    with pytest.raises(AlreadyExistsError, match=r"scheduler 's' already exists"):
        storage.create_scheduler("s", "daily", "hourly")
    assert storage.get_scheduler("s").trigger_name == "hourly"


# --- revision, concurrency ----------------------------------------------------------------


def test_revision_moves_with_every_definition_write_only(storage: DatabaseStorage) -> None:
    seen = [storage.revision()]

    def changed() -> bool:
        seen.append(storage.revision())
        return seen[-1] > seen[-2]

    _loader(storage)
    assert changed()
    storage.create_bloc("double", "example_transformer")
    assert changed()
    storage.create_pipeline("p", stages=[["load"], ["double"]])
    assert changed()
    storage.create_trigger("t", "p", "0 * * * *")
    assert changed()
    storage.create_scheduler("s", "p", "t")
    assert changed()
    storage.update_scheduler("s", enabled=False)
    assert changed()
    storage.update_bloc("double", config={"factor": 4})
    assert changed()
    with pytest.raises(AlreadyExistsError):
        _loader(storage)
    assert not changed()
    when = datetime(2026, 1, 1, tzinfo=UTC)
    storage.claim_run("s", when, pipeline_name="p", trigger_name="t", instance_id=None, now=when)
    assert not changed()  # run history is not a definition
    storage.delete_scheduler("s")
    assert changed()


def test_concurrent_creates_of_one_name(open_storage: OpenStorage) -> None:
    """Several connections create the same bloc at the same moment: exactly one wins."""
    storages = [open_storage() for _ in range(4)]
    barrier = threading.Barrier(len(storages))
    outcomes: list[object] = [None] * len(storages)

    def create(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = storages[index].create_bloc(
                "same", "example_transformer", config={"factor": index}
            )
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(storages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert len(errors) == len(storages) - 1, outcomes
    assert all(isinstance(e, AlreadyExistsError) for e in errors), errors
    assert all("bloc 'same' already exists" in str(e) for e in errors)
    winner = next(o for o in outcomes if not isinstance(o, Exception))
    assert storages[0].get_bloc("same") == winner


def test_one_storage_shared_by_threads(storage: DatabaseStorage) -> None:
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def work(index: int) -> None:
        barrier.wait()
        try:
            for n in range(10):
                storage.create_bloc(f"b{index}_{n}", "example_transformer")
                storage.get_bloc(f"b{index}_{n}")
                storage.list_blocs()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(storage.list_blocs()) == 80


def test_build_pipeline_needs_the_bloc_types(storage: DatabaseStorage, any_bloc_type: None) -> None:
    storage.create_bloc("odd", "storage_test_any", config={"payload": [1, "two"]})
    storage.create_pipeline("p", stages=[["odd"]])
    assert build_pipeline(storage, "p").blocs["odd"].config["payload"] == [1, "two"]
    unregister_bloc("storage_test_any")  # e.g. its plugin was uninstalled
    with pytest.raises(ValidationError, match=r"bloc 'odd': unknown bloc_type 'storage_test_any'"):
        storage.build_pipeline("p")
    with pytest.raises(NotFoundError, match=r"pipeline 'nope' does not exist"):
        build_pipeline(storage, "nope")
