"""How a caller follows a run: the events the engine sends while it runs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from th2etl.blocs.base import Bloc
    from th2etl.pipelines.context import RunContext
    from th2etl.pipelines.pipeline import Pipeline
    from th2etl.pipelines.result import BlocResult, RunResult

__all__ = ["RunListener", "notify"]

logger = logging.getLogger(__name__)


class RunListener:
    """Receives a run's events, in the engine's coordinating thread; override what you need.

    Storage records runs through a listener; the CLI shows live progress through one. An
    exception raised by a listener is logged and does not change the run.
    """

    def run_started(self, context: RunContext, pipeline: Pipeline) -> None:
        """The run begins (before any bloc)."""

    def bloc_started(self, context: RunContext, bloc: Bloc, attempt: int) -> None:
        """An attempt of ``bloc`` was submitted."""

    def bloc_progress(self, context: RunContext, result: BlocResult) -> None:
        """Rows flowed through a running bloc: ``result`` (still ``running``) has its counts so
        far. Sent about once a second per bloc while its counts change."""

    def bloc_finished(self, context: RunContext, result: BlocResult) -> None:
        """A bloc reached its final status."""

    def run_finished(self, context: RunContext, result: RunResult) -> None:
        """The run ended; ``result`` is final."""


def notify(listeners: Iterable[RunListener], context: RunContext, event: str, *args: Any) -> None:
    """Send ``event`` to each listener; one that raises is logged and changes nothing."""
    for listener in listeners:
        try:
            getattr(listener, event)(context, *args)
        except Exception:
            logger.exception("run listener %r failed on %s", listener, event)
