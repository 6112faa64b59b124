"""TH2ETL_EXECUTOR set to a Dask scheduler address, and make_executor's answer to it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from th2etl.configs.settings import get_settings
from th2etl.exceptions import ConfigurationError, MissingExtraError
from th2etl.executors import make_executor
from th2etl.executors.dask import DaskExecutor
from th2etl.storage import DatabaseStorage


def test_a_dask_address_is_an_executor_setting() -> None:
    settings = get_settings({"TH2ETL_EXECUTOR": " tcp://10.0.0.5:8786 "})
    assert settings.executor == "tcp://10.0.0.5:8786"
    assert get_settings({"TH2ETL_EXECUTOR": "Process"}).executor == "process"


def test_a_malformed_address_is_refused_with_the_accepted_forms() -> None:
    with pytest.raises(ConfigurationError) as caught:
        get_settings({"TH2ETL_EXECUTOR": "tcp://10.0.0.5"})
    assert str(caught.value) == (
        "TH2ETL_EXECUTOR 'tcp://10.0.0.5' is not a Dask scheduler address; use tcp://HOST:PORT "
        "(e.g. tcp://10.0.0.5:8786), tls://HOST:PORT, or scheduler-file:PATH (the file `dask "
        "scheduler --scheduler-file PATH` writes)"
    )


def test_another_value_lists_the_executors_and_the_dask_forms() -> None:
    with pytest.raises(ConfigurationError) as caught:
        get_settings({"TH2ETL_EXECUTOR": "dask"})
    message = str(caught.value)
    assert message.startswith("TH2ETL_EXECUTOR='dask' is not an executor; use one of thread, ")
    assert message.endswith("or the address of a Dask scheduler to run on its cluster: "
                            "tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786), tls://HOST:PORT, or "
                            "scheduler-file:PATH (the file `dask scheduler --scheduler-file "
                            "PATH` writes)")  # fmt: skip


def test_without_the_extra_the_setting_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # not installed, as far as Python knows
    with pytest.raises(MissingExtraError) as caught:
        get_settings({"TH2ETL_EXECUTOR": "tcp://10.0.0.5:8786"})
    assert str(caught.value) == (
        "TH2ETL_EXECUTOR 'tcp://10.0.0.5:8786' runs th2etl on a Dask cluster, which needs the "
        "'distributed' package, which is not installed; install it with: "
        "pip install 'th2etl[dask]'"
    )


def test_make_executor_builds_a_dask_executor_without_connecting(tmp_path: Path) -> None:
    with DatabaseStorage(tmp_path / "th2etl.db") as storage:
        executor = make_executor("tcp://127.0.0.1:1", storage)
        assert isinstance(executor, DaskExecutor)
        assert repr(executor) == "DaskExecutor('tcp://127.0.0.1:1')"
        executor.shutdown()
