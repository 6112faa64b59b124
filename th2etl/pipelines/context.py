"""RunContext: what one pipeline run knows, shared by the blocs of that run."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from th2etl.exceptions import NotFoundError
from th2etl.logical_time import LogicalTime
from th2etl.types import Rows

__all__ = ["DEFAULT_BATCH_SIZE", "RunContext"]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 5000
"""Rows per batch unless the run or the bloc says otherwise (see th2etl.pipelines.engine)."""


def _call_hook(hook: Callable[[], None], context: RunContext) -> None:
    try:
        hook()
    except Exception:
        logger.exception("a cancel hook of run %s failed", context.run_id)


class RunContext:
    """The in-memory store of one pipeline run; safe to use from the stage's threads.

    Blocs read the run's identity (``run_id``, ``pipeline_name``, ``scheduler_name``,
    ``trigger_name``, ``scheduled_time``), its ``logical_time`` (the moment and data interval
    it is for, see :mod:`th2etl.logical_time`; set by the engine when the run starts), its
    ``variables``, the ``output_dir`` folder they may write to (or None), a ``logger``, the
    ``batch_size`` of the rows they pass on, and the kept output rows of every bloc that has
    finished. Output rows are shared, not copied: a bloc must not modify the rows it receives.

    Each attempt of a bloc receives its own copy of the context: ``cancel_requested`` turns true
    when the run is cancelled or when that attempt must stop (its timeout, a failure elsewhere
    in its stream), and :meth:`on_cancel` registers a hook called at that moment (the
    PostgreSQL blocs cancel their statement on the server with it).
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
        self.batch_size = DEFAULT_BATCH_SIZE
        self._outputs: dict[str, Rows] = {}
        self._lock = threading.Lock()
        self._cancelled = False  # set once, under _lock; read without it
        self._hooks: list[Callable[[], None]] = []

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
        return self._cancelled

    def on_cancel(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Call ``hook()`` (from another thread) when this attempt or the run is asked to stop,
        at once if it already was; returns a function that removes the hook."""
        with self._lock:
            if not self._cancelled:
                self._hooks.append(hook)
                return lambda: self._remove_hook(hook)
        _call_hook(hook, self)
        return lambda: None

    def _remove_hook(self, hook: Callable[[], None]) -> None:
        with self._lock:
            if hook in self._hooks:
                self._hooks.remove(hook)

    def _request_cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            _call_hook(hook, self)

    def _attempt(self, batch_size: int) -> RunContext:
        """A copy for one attempt of one bloc: same run and outputs, its own cancel."""
        # Not copy.copy: this runs once per bloc and attempt, and the engine's cost per bloc is
        # measured (scripts/bench_engine.py).
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.batch_size = batch_size
        clone._cancelled = False
        clone._hooks = []
        return clone

    def __repr__(self) -> str:
        return f"RunContext(pipeline_name={self.pipeline_name!r}, run_id={self.run_id!r})"
