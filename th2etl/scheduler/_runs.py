"""A scheduled run's output folder and log, and the helpers around one run."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from th2etl.exceptions import ConfigurationError, StorageError
from th2etl.pipelines.engine import RunListener
from th2etl.pipelines.result import RunResult, RunStatus

if TYPE_CHECKING:
    from th2etl.pipelines.context import RunContext
    from th2etl.pipelines.pipeline import Pipeline


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


class RunLogFilter(logging.Filter):
    """Keeps the records of one run: its coordinating thread and its bloc threads."""

    def __init__(self, thread_id: int, prefix: str) -> None:
        super().__init__()
        self.thread_id = thread_id
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.thread_id or (record.threadName or "").startswith(self.prefix)


class InlineExecutor(Executor):
    """Runs each submitted call at once, in the caller's thread (fake-clock mode): a stage's
    blocs run one after another, deterministically; bloc timeouts cannot interrupt them."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


INLINE = InlineExecutor()


def note(handler: logging.Handler, message: str) -> None:
    """Write a line to the run's log whatever the logging levels are."""
    record = logging.LogRecord(__name__, logging.INFO, __file__, 0, message, None, None)
    handler.handle(record)


class LostFinish(NamedTuple):
    """A run's final status the database did not take (it was away); written again later."""

    run_id: str
    status: RunStatus
    finished_at: datetime
    error: str | None


class SafeListener(RunListener):
    """Wraps the storage recorder: a database error must not lose the run's final status."""

    def __init__(self, inner: RunListener, on_lost_finish: Callable[[RunResult], None]) -> None:
        self.inner = inner
        self.on_lost_finish = on_lost_finish

    def run_started(self, context: RunContext, pipeline: Pipeline) -> None:
        self.inner.run_started(context, pipeline)

    def bloc_started(self, context: RunContext, bloc: Any, attempt: int) -> None:
        self.inner.bloc_started(context, bloc, attempt)

    def bloc_progress(self, context: RunContext, result: Any) -> None:
        self.inner.bloc_progress(context, result)

    def bloc_finished(self, context: RunContext, result: Any) -> None:
        self.inner.bloc_finished(context, result)

    def run_finished(self, context: RunContext, result: RunResult) -> None:
        try:
            self.inner.run_finished(context, result)
        except Exception:
            self.on_lost_finish(result)
            raise
