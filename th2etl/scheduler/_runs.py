"""A scheduled run's output folder, and the scheduler's bookkeeping of one run."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from th2etl.exceptions import ConfigurationError, StorageError
from th2etl.pipelines.pipeline import Pipeline
from th2etl.pipelines.result import RunStatus


def default_logs_dir() -> Path | None:
    """The ``pipelines_logs_dir`` setting (env ``pipelines_logs_dir`` or ``PIPELINES_LOGS_DIR``)."""
    from th2etl.configs.settings import get_settings

    try:
        return get_settings().pipelines_logs_dir
    except ConfigurationError:  # a bad database variable is not this feature's problem
        env = os.environ
        value = env.get("pipelines_logs_dir") or env.get("PIPELINES_LOGS_DIR")
        return Path(value).expanduser() if value and value.strip() else None


def make_run_dir(logs_dir: Path, scheduler_name: str, scheduled_time: datetime) -> Path:
    """Create ``<logs_dir>/<scheduler>/<YYYYmmdd_HHMMSS>`` (``_2``, ``_3``... if taken)."""
    parent = logs_dir / scheduler_name
    parent.mkdir(parents=True, exist_ok=True)
    stamp = scheduled_time.astimezone(UTC).strftime("%Y%m%d_%H%M%S")
    for number in range(1, 10_000):
        path = parent / (stamp if number == 1 else f"{stamp}_{number}")
        try:
            path.mkdir()  # atomic: two runs (even in two processes) never share a folder
        except FileExistsError:
            continue
        return path
    raise StorageError(f"cannot create a run folder under {parent}: {stamp}_* are all taken")


def with_timeout(pipeline: Pipeline, timeout: float | None) -> Pipeline:
    """``pipeline`` with the schedule's ``timeout`` option, which overrides the pipeline's own
    (the run executor enforces it); ``pipeline`` itself when the option is unset."""
    if timeout is None or timeout == pipeline.timeout:
        return pipeline
    return Pipeline(
        pipeline.name, pipeline.stages, description=pipeline.description, timeout=timeout
    )


class LostFinish(NamedTuple):
    """A run's final status the database did not take (it was away); written again later."""

    run_id: str
    status: RunStatus
    finished_at: datetime
    error: str | None
