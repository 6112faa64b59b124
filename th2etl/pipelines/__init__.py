"""Pipelines: stages of blocs, the RunContext they share, and the engine that runs them."""

from __future__ import annotations

from th2etl.pipelines.cancel import CancelToken
from th2etl.pipelines.context import RunContext
from th2etl.pipelines.engine import run_pipeline
from th2etl.pipelines.example import EXAMPLE_DATA, build_example_pipeline
from th2etl.pipelines.listener import RunListener
from th2etl.pipelines.pipeline import Pipeline, validate_stage_names
from th2etl.pipelines.result import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    BlocResult,
    BlocStatus,
    RunResult,
    RunStatus,
)

__all__ = [
    "ACTIVE_STATUSES",
    "EXAMPLE_DATA",
    "TERMINAL_STATUSES",
    "BlocResult",
    "BlocStatus",
    "CancelToken",
    "Pipeline",
    "RunContext",
    "RunListener",
    "RunResult",
    "RunStatus",
    "build_example_pipeline",
    "run_pipeline",
    "validate_stage_names",
]
