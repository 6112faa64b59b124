"""A pipeline's ``timeout``: stored, read back, built into the Pipeline the executors bound;
refused when it is not a number of seconds above 0, changing nothing."""

from __future__ import annotations

import pytest

from th2etl import Pipeline, create_bloc
from th2etl.exceptions import ValidationError
from th2etl.storage import DatabaseStorage


@pytest.fixture
def loaded(storage: DatabaseStorage) -> DatabaseStorage:
    storage.create_bloc("double", "example_transformer", config={"factor": 2})
    return storage


def test_a_pipeline_timeout_is_stored_updated_and_built(loaded: DatabaseStorage) -> None:
    created = loaded.create_pipeline("daily", stages=[["double"]], timeout=90)
    assert created.timeout == 90.0
    assert loaded.get_pipeline("daily") == created
    assert loaded.build_pipeline("daily").timeout == 90.0
    assert loaded.update_pipeline("daily", description="x").timeout == 90.0  # None: kept
    assert loaded.update_pipeline("daily", timeout=1.5).timeout == 1.5
    assert loaded.get_pipeline("daily").timeout == 1.5
    assert loaded.update_pipeline("daily", timeout=0).timeout is None  # 0 removes it
    assert loaded.get_pipeline("daily").timeout is None
    assert loaded.build_pipeline("daily").timeout is None
    assert loaded.create_pipeline("plain", stages=[["double"]]).timeout is None


@pytest.mark.parametrize("timeout", [-1, float("nan"), float("inf"), "soon", True])
def test_a_timeout_that_is_not_seconds_is_refused(loaded: DatabaseStorage, timeout: object) -> None:
    message = (
        rf"pipeline 'daily': timeout must be a number of seconds above 0, got {timeout!r}; "
        r"leave it out \(or give 0\) for a pipeline without a timeout"
    )
    with pytest.raises(ValidationError, match=message):
        loaded.create_pipeline("daily", stages=[["double"]], timeout=timeout)  # type: ignore[arg-type]
    assert loaded.list_pipelines() == []
    loaded.create_pipeline("daily", stages=[["double"]], timeout=5)
    with pytest.raises(ValidationError, match=message):
        loaded.update_pipeline("daily", timeout=timeout)  # type: ignore[arg-type]
    assert loaded.get_pipeline("daily").timeout == 5.0
    with pytest.raises(ValidationError, match=message):
        Pipeline("daily", [[create_bloc("d", "example_transformer")]], timeout=timeout)  # type: ignore[arg-type]
