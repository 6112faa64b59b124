"""RunContext: what one pipeline run knows, shared by the blocs of that run."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from th2etl.exceptions import NotFoundError
from th2etl.logical_time import LogicalTime
from th2etl.types import Rows

__all__ = ["RunContext"]


class RunContext:
    """The in-memory store of one pipeline run; safe to use from the stage's threads.

    Blocs read the run's identity (``run_id``, ``pipeline_name``, ``scheduler_name``,
    ``trigger_name``, ``scheduled_time``), its ``logical_time`` (the moment and data interval
    it is for, see :mod:`th2etl.logical_time`; set by the engine when the run starts), its
    ``variables``, the ``output_dir`` folder they may write to (or None), a ``logger``, and the
    output rows of every bloc that has finished.
    Output rows are shared, not copied: a bloc must not modify the rows it receives.
    """

    def __init__(
        self,
        pipeline_name: str,
        *,
        run_id: str | None = None,
        scheduler_name: str | None = None,
        trigger_name: str | None = None,
        scheduled_time: datetime | None = None,
        variables: Mapping[str, Any] | None = None,
        output_dir: str | Path | None = None,
        logger: logging.Logger | None = None,
        logical_time: LogicalTime | None = None,
    ) -> None:
        self.run_id = run_id or uuid.uuid4().hex
        self.pipeline_name = pipeline_name
        self.scheduler_name = scheduler_name
        self.trigger_name = trigger_name
        self.scheduled_time = scheduled_time
        self.logical_time = logical_time
        self.variables: dict[str, Any] = dict(variables or {})
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.logger = logger or logging.getLogger(f"th2etl.pipelines.run.{pipeline_name}")
        self._outputs: dict[str, Rows] = {}
        self._lock = threading.Lock()
        self._cancelled = threading.Event()

    def set_output(self, bloc_name: str, rows: Rows) -> None:
        """Record the output rows of a finished bloc."""
        with self._lock:
            self._outputs[bloc_name] = rows

    def get_output(self, bloc_name: str) -> Rows:
        """The output rows of a finished bloc of this run."""
        with self._lock:
            try:
                return self._outputs[bloc_name]
            except KeyError:
                done = ", ".join(self._outputs) or "none yet"
                raise NotFoundError(
                    f"run {self.run_id} of pipeline {self.pipeline_name!r} has no output for "
                    f"bloc {bloc_name!r}; finished blocs: {done}"
                ) from None

    def has_output(self, bloc_name: str) -> bool:
        with self._lock:
            return bloc_name in self._outputs

    @property
    def outputs(self) -> dict[str, Rows]:
        """A snapshot of every finished bloc's output rows, by bloc name."""
        with self._lock:
            return dict(self._outputs)

    @property
    def cancel_requested(self) -> bool:
        """True once the run was asked to stop; a long bloc may check it and return early."""
        return self._cancelled.is_set()

    def _request_cancel(self) -> None:
        self._cancelled.set()

    def __repr__(self) -> str:
        return f"RunContext(pipeline_name={self.pipeline_name!r}, run_id={self.run_id!r})"
