"""What a run produced: value objects, JSON-ready, shared by the engine, storage and API."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from th2etl.types import JSON, Rows

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "BlocResult",
    "BlocStatus",
    "Outputs",
    "RunResult",
    "RunStatus",
]


class RunStatus(StrEnum):
    """The state of a pipeline run: a state machine, enforced by the storage.

    A recorded run starts ``queued`` (waiting for a slot) or ``running``. ``queued`` becomes
    ``running``, ``cancelled``, ``abandoned`` or ``failed`` (or ``skipped``: a claimed
    scheduler tick that is then skipped); ``running`` ends ``succeeded``,
    ``failed``, ``cancelled`` or ``abandoned`` (its owner died or lost its lease). A scheduler
    records a tick it does not run (missed, overlapping) as ``skipped``, terminal from the
    start. A terminal status never changes. "Has it finished?" is always
    ``status in TERMINAL_STATUSES`` (:attr:`finished`); limits and overlap checks count the
    ``ACTIVE_STATUSES``.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    ABANDONED = "abandoned"

    @property
    def finished(self) -> bool:
        """Whether the run has ended (its status is terminal and will never change)."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES: frozenset[RunStatus] = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.SKIPPED,
        RunStatus.ABANDONED,
    }
)
"""The statuses of a run that has ended: the one test of "has it finished?"."""

ACTIVE_STATUSES: frozenset[RunStatus] = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
"""The statuses of a run not finished yet: what limits and overlap checks count."""

TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset(
        {
            RunStatus.RUNNING,
            RunStatus.CANCELLED,
            RunStatus.ABANDONED,
            RunStatus.FAILED,
            RunStatus.SKIPPED,  # a claimed scheduler tick that is then skipped
        }
    ),
    RunStatus.RUNNING: frozenset(
        {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.ABANDONED}
    ),
    **{status: frozenset() for status in TERMINAL_STATUSES},
}
"""Each status and the statuses it may become (the storage's SQL trigger enforces the same)."""


class BlocStatus(StrEnum):
    """The state of one bloc within a run.

    ``skipped``: never started, or stopped before it could make anything visible, because an
    earlier stage failed; ``cancelled``: never started (or its retry never started) because the
    run was cancelled, or stopped before it finished because the run was cancelled or a bloc it
    streams with failed (its ``error_message`` says which).
    """

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class Outputs(dict[str, Rows]):
    """``RunResult.outputs``: a dict whose missing key says why the rows are not there.

    ``dropped`` counts the rows of each bloc that succeeded without its rows being kept;
    ``keep`` is the run's limit (rows kept per bloc; 0: none, as ``keep_outputs=False``).
    """

    def __init__(self, rows: dict[str, Rows], dropped: dict[str, int], keep: int) -> None:
        super().__init__(rows)
        self._dropped = dropped
        self._keep = keep

    def __missing__(self, name: str) -> Rows:
        if name in self._dropped:
            if self._keep == 0:
                why = (
                    "but this run kept none (keep_outputs=False, as in every run started by the "
                    "scheduler, the API, `th2etl run` or storage.run_pipeline())"
                )
            else:
                why = f"more than the {self._keep} a run keeps by default"
            raise KeyError(
                f"bloc {name!r} passed on {self._dropped[name]} rows, {why}; read what its "
                "exporters wrote, or run the pipeline from Python with "
                "pipeline.run(keep_outputs=True) to keep every row in memory"
            )
        raise KeyError(
            f"no output for bloc {name!r}; blocs with kept rows: {', '.join(self) or 'none'}"
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass
class BlocResult:
    """How one bloc fared in a run."""

    name: str
    bloc_type: str
    stage: int
    status: BlocStatus
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration: float = 0.0
    rows_in: int = 0
    rows_out: int = 0
    batches_in: int = 0
    batches_out: int = 0
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None

    def to_dict(self) -> JSON:
        return {
            "name": self.name,
            "bloc_type": self.bloc_type,
            "stage": self.stage,
            "status": self.status.value,
            "attempts": self.attempts,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration": self.duration,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "batches_in": self.batches_in,
            "batches_out": self.batches_out,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "error_traceback": self.error_traceback,
        }


@dataclass
class RunResult:
    """The outcome of one pipeline run, with each bloc's result in stage order."""

    run_id: str
    pipeline_name: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime
    blocs: dict[str, BlocResult] = field(default_factory=dict)
    error: str | None = None
    scheduler_name: str | None = None
    scheduled_time: datetime | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Rows] = field(default_factory=dict, repr=False)
    """The kept output rows of every finished bloc (not stored, not in ``to_dict``); see
    ``keep_outputs`` in :func:`th2etl.pipelines.run_pipeline`."""

    @property
    def succeeded(self) -> bool:
        return self.status is RunStatus.SUCCEEDED

    @property
    def duration(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> JSON:
        return {
            "run_id": self.run_id,
            "pipeline_name": self.pipeline_name,
            "scheduler_name": self.scheduler_name,
            "scheduled_time": _iso(self.scheduled_time),
            "status": self.status.value,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration": self.duration,
            "error": self.error,
            "variables": self.variables,
            "blocs": [bloc.to_dict() for bloc in self.blocs.values()],
        }

    def summary(self, *, outcome: bool = True) -> str:
        """A few human lines: the run's outcome (unless ``outcome=False``), one line per bloc."""
        lines = []
        if outcome:
            lines.append(
                f"pipeline {self.pipeline_name!r} {self.status.value} in {self.duration:.3f}s"
            )
        for bloc in self.blocs.values():
            line = (
                f"  stage {bloc.stage} {bloc.name:<24} {bloc.status.value:<9} "
                f"rows in {bloc.rows_in:>8} out {bloc.rows_out:>8}  {bloc.duration:.3f}s"
            )
            if bloc.attempts > 1:
                line += f"  ({bloc.attempts} attempts)"
            if bloc.error_message:
                line += f"\n      {bloc.error_type}: {bloc.error_message}"
            lines.append(line)
        return "\n".join(lines)
