"""``th2etl run PIPELINE``: run a stored pipeline once, now, with live progress
(:class:`ProgressPrinter`); the run is recorded like a scheduled one."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from signal import SIGINT, SIGTERM
from typing import TYPE_CHECKING, Any

from th2etl.cli._args import key_value
from th2etl.exceptions import ConfigurationError, NotFoundError, Th2etlError
from th2etl.pipelines.listener import RunListener

if TYPE_CHECKING:
    from types import FrameType

    from th2etl.blocs.base import Bloc
    from th2etl.cli._args import Commands
    from th2etl.executors import RunSlot
    from th2etl.pipelines.context import RunContext
    from th2etl.pipelines.pipeline import Pipeline
    from th2etl.pipelines.result import BlocResult, RunResult

__all__ = ["ProgressPrinter", "register"]

EXAMPLES = """\
  th2etl run daily_sales --var day=2026-11-25  run a stored pipeline now, with live progress
"""


def register(commands: Commands) -> None:
    run = commands.add_parser(
        "run",
        help="run a stored pipeline now (example: th2etl run daily_sales --var day=2026-11-25)",
        description="Run a pipeline stored in the database once, now, showing each bloc's "
        "progress; the run is recorded. SIGTERM or Ctrl-C cancels it (TH2ETL_CANCEL_GRACE "
        "seconds to stop, then it is stopped). Exit status 0 when it succeeds, 1 when it "
        "fails, 128 + the signal's number when a signal cancelled it.",
    )
    run.add_argument("pipeline", metavar="PIPELINE", help="name of the stored pipeline")
    run.add_argument(
        "--var",
        action="append",
        default=[],
        type=key_value("--var", "day=2026-11-25"),
        metavar="KEY=VALUE",
        help="a run variable, read by configs as ${var:KEY} (repeatable)",
    )
    run.add_argument(
        "--at",
        metavar="ISO",
        help="the moment the run is for, read by configs as ${run:scheduled_time}, "
        "${run:date}... (default: when it starts; no offset means UTC)",
    )
    run.set_defaults(handler=_run)


class ProgressPrinter(RunListener):
    """Prints a run's progress as it happens: one line per bloc start and finish, and while
    rows stream, each running bloc's rows so far and rows per second: one status line updated
    in place on a terminal, else a line every ``every`` seconds."""

    def __init__(self, stream: Any = None, *, every: float = 5.0) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.every = every
        self._lock = threading.Lock()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._flowing: dict[str, str] = {}  # bloc name -> "rows so far (rate)"
        self._shown = False  # a status line is on screen (terminal only)
        self._last = time.monotonic()

    def _print(self, line: str) -> None:
        with self._lock:
            if self._shown:
                self.stream.write("\r\x1b[K")  # the status line gives way
                self._shown = False
            print(line, file=self.stream, flush=True)

    def bloc_progress(self, context: RunContext, result: BlocResult) -> None:
        rows = max(result.rows_in, result.rows_out)
        rate = rows / result.duration if result.duration > 0 else 0.0
        self._flowing[result.name] = f"{result.name} {rows:,} rows ({rate:,.0f} rows/s)"
        status = "  streaming " + " | ".join(self._flowing.values())
        with self._lock:
            if self._tty:
                self.stream.write("\r\x1b[K" + status)
                self.stream.flush()
                self._shown = True
                return
            now = time.monotonic()
            if now - self._last < self.every:
                return
            self._last = now
        self._print(status)

    def run_started(self, context: RunContext, pipeline: Pipeline) -> None:
        stages, blocs = len(pipeline.stages), len(pipeline.blocs)
        self._print(
            f"run {context.run_id} of pipeline {pipeline.name!r} started "
            f"({stages} stage{'s' if stages != 1 else ''}, {blocs} bloc{'s' if blocs != 1 else ''})"
        )

    def bloc_started(self, context: RunContext, bloc: Bloc, attempt: int) -> None:
        again = f" (attempt {attempt})" if attempt > 1 else ""
        self._print(f"  started   {bloc.name}{again}")

    def bloc_finished(self, context: RunContext, result: BlocResult) -> None:
        self._flowing.pop(result.name, None)
        line = (
            f"  {result.status.value:<9} {result.name}  rows in {result.rows_in} "
            f"out {result.rows_out}  {result.duration:.3f}s"
        )
        if result.error_message:
            line += f"\n            {result.error_type}: {result.error_message}"
        self._print(line)

    def run_finished(self, context: RunContext, result: RunResult) -> None:
        line = f"pipeline {result.pipeline_name!r} {result.status.value} in {result.duration:.3f}s"
        if result.error:
            line += f": {result.error}"
        self._print(line)


def _run(args: argparse.Namespace) -> int:
    from th2etl.configs.logging import configure_logging
    from th2etl.configs.settings import get_settings
    from th2etl.executors import RunJob, RunSlot, make_executor
    from th2etl.logical_time import LogicalTime, parse_instant
    from th2etl.pipelines.result import RunStatus
    from th2etl.storage import DatabaseStorage
    from th2etl.storage.owner import RunOwner
    from th2etl.storage.recorder import pipeline_from_snapshot

    try:
        configure_logging({**os.environ, "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")})
        settings = get_settings()
        with DatabaseStorage.from_settings(settings) as storage:
            try:
                snapshot = storage.definition_snapshot(args.pipeline)
                pipeline = pipeline_from_snapshot(snapshot)
            except NotFoundError:
                names = [record.name for record in storage.list_pipelines()]
                if args.pipeline in names:
                    raise  # the pipeline exists; something it needs does not
                message = unknown_pipeline(args.pipeline, names, storage.describe())
                if "pipelines" in storage.legacy_tables():
                    message += (
                        "; this database has th2etl 0.0.x tables (etl_pipelines): import them "
                        "with 'th2etl import-legacy'"
                    )
                raise NotFoundError(message) from None
            variables = dict(args.var)
            at = None if args.at is None else LogicalTime.at(parse_instant(args.at, "--at"))
            # A process of its own already: the run executes here unless TH2ETL_EXECUTOR
            # says otherwise.
            executor = make_executor(
                settings.executor or "thread", storage, grace=settings.cancel_grace
            )
            executor.check(pipeline)
            # This process owns the run: it heartbeats for it, so a cancel from any process
            # reaches it and, if it dies, any live th2etl process marks the run abandoned.
            owner = RunOwner(storage, kind="cli").start()
            try:
                record = storage.create_run(
                    None,
                    pipeline.name,
                    owner_id=owner.instance_id,
                    started_by="cli",
                    status=RunStatus.RUNNING,
                    variables=variables,
                    definition=snapshot,
                    timeout=pipeline.timeout,
                    executor=executor.kind,
                    logical_time=at,
                )
                slot = RunSlot(record.run_id)
                owner.track(record.run_id, slot)
                job = RunJob(
                    record.run_id,
                    pipeline,
                    variables=variables,
                    instance_id=owner.instance_id,
                    logical_time=at,
                )
                # Signals cancel the run from before it starts: it may begin at once.
                with _signals_cancel() as received:
                    handle = executor.submit(job, listeners=[ProgressPrinter()])
                    slot.attach(handle)
                    result, told = None, False
                    while result is None:
                        if received and not told:
                            told = True
                            _cancel_on_signal(slot, received[0], executor.grace)
                        result = handle.wait(0.2)
                if not handle.recorded:  # the database was away: written once it is back
                    status, error = owner.outcome(record.run_id, result.status, result.error)
                    owner.record_later(record.run_id, status, result.finished_at, error)
                executor.shutdown()
            finally:
                owner.stop()
    except Th2etlError as exc:
        print(f"th2etl: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigurationError) else 1
    print(f"run id: {result.run_id}")
    code = 128 + received[0] if received else (0 if result.succeeded else 1)
    if handle.stopped:
        # A run thread that ignored its cancel would keep the process from exiting.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


@contextlib.contextmanager
def _signals_cancel() -> Iterator[list[int]]:
    """While inside, SIGTERM and SIGINT are noted, in order, in the list it yields, for the main
    thread to cancel the run at its next wait. The handler does nothing else: printing or taking
    a lock from it could break, or deadlock, whatever the main thread was doing."""
    received: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {number: signal.signal(number, note) for number in (SIGTERM, SIGINT)}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _cancel_on_signal(slot: RunSlot, signum: int, grace: float) -> None:
    """Cancel the run for the signal ``signum``: it gets ``grace`` seconds to stop, then it is
    stopped and recorded ``cancelled``."""
    print(
        f"received {signal.Signals(signum).name}: cancelling the run (it has {grace:g}s to stop)",
        file=sys.stderr,
        flush=True,
    )
    slot.cancel()


def unknown_pipeline(name: str, names: list[str], where: str) -> str:
    """The message for a pipeline name that is not stored, listing the ones that are."""
    if not names:
        return (
            f"pipeline {name!r} does not exist: no pipeline is stored in {where} yet; create one "
            "(storage.create_pipeline in Python, or POST /pipelines), or check DATABASE_URL"
        )
    shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    return (
        f"pipeline {name!r} does not exist in {where}; the stored pipelines are: {shown} "
        "(or check DATABASE_URL)"
    )
