"""The ``th2etl`` command (also ``python -m th2etl.runner``).

No command runs the scheduler in the foreground; ``--serve-api`` adds the REST API in the same
process; ``--background`` starts either detached. ``status``, ``stop``, ``run`` and ``demo`` are
sub-commands; ``th2etl --help`` lists them all with examples.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from th2etl.exceptions import ConfigurationError, NotFoundError, Th2etlError
from th2etl.pipelines.engine import CancelToken, RunListener

if TYPE_CHECKING:
    from th2etl.blocs.base import Bloc
    from th2etl.pipelines.context import RunContext
    from th2etl.pipelines.pipeline import Pipeline
    from th2etl.pipelines.result import BlocResult, RunResult

__all__ = ["build_parser", "main"]

EXAMPLES = """\
commands and examples:
  th2etl                                       run the scheduler in the foreground
  th2etl --serve-api                           the REST API (docs at /docs) and the scheduler
  TH2ETL_API_KEY=... th2etl --serve-api --host 0.0.0.0 --port 8080
                                               the same on every address, with an API key
  th2etl --background --env SOURCE=prod        the scheduler, detached; prints its PID and log
  th2etl --serve-api --background              the API service, detached
  th2etl status                                is the background service running?
  th2etl stop                                  stop the background service (SIGTERM)
  th2etl run daily_sales --var day=2026-11-25  run a stored pipeline now, with live progress
  th2etl demo                                  run the example pipeline end to end
  th2etl --version                             print the version

The database comes from DATABASE_URL or DATABASE_HOST/PORT/NAME/USER/PASSWORD (else SQLite at
TH2ETL_SQLITE_PATH or ./th2etl.db); logging from LOG_LEVEL, LOG_LEVELS and LOG_DIR;
TH2ETL_API_KEY makes the API require 'Authorization: Bearer <key>'.
"""


DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port number; use a whole number from 1 to 65535, e.g. --port 8080"
        ) from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{port} is out of range; use a port from 1 to 65535, e.g. --port 8080"
        )
    return port


def _pair(option: str, example: str) -> Any:
    def parse(text: str) -> tuple[str, str]:
        key, equals, value = text.partition("=")
        if not equals:
            raise argparse.ArgumentTypeError(
                f"{text!r} has no '='; write {option} KEY=VALUE, e.g. {option} {example}"
            )
        if not key.strip():
            raise argparse.ArgumentTypeError(
                f"{text!r} has an empty name before '='; write {option} KEY=VALUE, "
                f"e.g. {option} {example}"
            )
        return key.strip(), value

    return parse


def _version() -> str:
    from th2etl import __version__

    return __version__


# -- the service: scheduler, optionally with the API ------------------------------------------


def _check_service_config(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """Everything that can be refused before the service starts with ``environ`` (also
    before detaching)."""
    from th2etl.configs.logging import parse_logging_config
    from th2etl.configs.settings import get_settings

    parse_logging_config(environ)
    get_settings(environ)
    if args.serve_api:
        from th2etl.api.server import bind_socket, check_bind

        check_bind(args.host, environ.get("TH2ETL_API_KEY"), args.insecure_no_auth)
        bind_socket(args.host, args.port).close()  # the port is free (a clear error if not)


def _serve(args: argparse.Namespace) -> int:
    from th2etl._background import mark_ready, remove_own_pid_file
    from th2etl.configs.logging import configure_logging

    try:
        if args.background:
            return _start_background(args)
        if args.env:
            os.environ.update(dict(args.env))
        _check_service_config(args, os.environ)
        configure_logging()
    except Th2etlError as exc:
        print(f"th2etl: error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.serve_api:
            from th2etl.api.server import serve

            serve(
                host=args.host,
                port=args.port,
                insecure_no_auth=args.insecure_no_auth,
                on_ready=mark_ready,
            )
        else:
            _run_scheduler(on_ready=mark_ready)
    except Th2etlError as exc:
        print(f"th2etl: error: {exc}", file=sys.stderr)
        return 1
    finally:
        remove_own_pid_file()
    return 0


def _run_scheduler(on_ready: Callable[[], None]) -> None:
    import logging
    import signal
    import time
    from types import FrameType

    from th2etl.configs.settings import get_settings
    from th2etl.exceptions import DatabaseUnavailableError
    from th2etl.scheduler import load_scheduler_manager
    from th2etl.storage import DatabaseStorage

    logger = logging.getLogger("th2etl.runner")

    def stop_early(signum: int, frame: FrameType | None) -> None:
        # Until manager.start() installs its own handlers, a SIGTERM ends the process cleanly.
        logger.info("received %s: stopping", signal.Signals(signum).name)
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, stop_early)
    settings = get_settings()
    try:
        delay = 1.0
        while True:
            # A database that is down at start-up is waited for, as the running scheduler
            # waits out an outage; everything else (bad settings) stops here.
            try:
                storage = DatabaseStorage.from_settings(settings)
            except DatabaseUnavailableError as exc:
                if settings.backend != "postgresql":
                    raise  # a SQLite file that cannot be opened is a setting to fix, not an outage
                logger.warning("database unavailable: %s; retrying in %.0fs", exc, delay)
                on_ready()  # the process is up; a detached start need not wait for the database
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            break
        with storage:
            manager = load_scheduler_manager(storage)
            logger.info("scheduler started on %s (Ctrl-C or SIGTERM stops it)", settings.describe())
            on_ready()
            # start() stops on SIGINT and SIGTERM, letting running pipelines finish.
            manager.start()
    except KeyboardInterrupt:
        logger.info("interrupted: stopping the scheduler")
    finally:
        signal.signal(signal.SIGTERM, previous)
    logger.info("scheduler stopped")


def _start_background(args: argparse.Namespace) -> int:
    from th2etl._background import python_command, start_background, state_dir

    # Refuse bad settings here, where the user sees the message, not in a detached log.
    extra_env = dict(args.env)
    _check_service_config(args, {**os.environ, **extra_env})
    command = python_command()
    if args.serve_api:
        command += ["--serve-api", "--host", args.host, "--port", str(args.port)]
        if args.insecure_no_auth:
            command.append("--insecure-no-auth")
    directory = state_dir(args.state_dir)
    info, ready = start_background(command, directory, extra_env)
    if args.serve_api:
        from th2etl.api.server import api_url

        what = f"API on {api_url(args.host, args.port)} and scheduler"
    else:
        what = "scheduler"
    if ready:
        print(f"th2etl {what} started in the background")
    else:
        print(f"th2etl {what} started in the background (still starting; watch its log)")
    print(f"PID: {info.pid}")
    print(f"log: {info.log_file}")
    print(f"stop it with: th2etl stop{_state_flag(args)}")
    return 0


def _state_flag(args: argparse.Namespace) -> str:
    return f" --state-dir {args.state_dir}" if getattr(args, "state_dir", None) else ""


def _status(args: argparse.Namespace) -> int:
    from th2etl._background import ServiceState, read_service, state_dir

    directory = state_dir(args.state_dir)
    state, info = read_service(directory)
    if state == ServiceState.RUNNING and info is not None:
        print(f"th2etl is running in the background: PID {info.pid}, started {info.started_at}")
        print(f"command: {' '.join(info.command)}")
        print(f"log: {info.log_file}")
        return 0
    if state == ServiceState.STALE:
        pid = f" for PID {info.pid}" if info is not None else ""
        print(f"th2etl is not running (removed a stale pid file{pid} in {directory})")
    else:
        print(f"th2etl is not running in the background (no pid file in {directory})")
    return 3


def _stop(args: argparse.Namespace) -> int:
    from th2etl._background import state_dir, stop_service

    directory = state_dir(args.state_dir)
    outcome, info = stop_service(directory, timeout=args.timeout, force=args.force)
    pid = info.pid if info is not None else "?"
    if outcome == "stopped":
        print(f"th2etl stopped (PID {pid})")
        return 0
    if outcome == "killed":
        print(f"th2etl did not stop within {args.timeout:g}s and was killed (PID {pid})")
        return 0
    if outcome == "still running":
        print(
            f"th2etl (PID {pid}) is still running {args.timeout:g}s after SIGTERM; wait, or "
            "run 'th2etl stop --force' to kill it",
            file=sys.stderr,
        )
        return 1
    if outcome == "stale":
        print(f"th2etl was not running (removed a stale pid file for PID {pid} in {directory})")
        return 0
    print(f"th2etl is not running in the background (no pid file in {directory})")
    return 0


# -- th2etl run -------------------------------------------------------------------------------


class ProgressPrinter(RunListener):
    """Prints a run's progress as it happens: one line per bloc start and finish."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()

    def _print(self, line: str) -> None:
        with self._lock:
            print(line, file=self.stream, flush=True)

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
    from th2etl.pipelines.engine import run_pipeline
    from th2etl.storage import DatabaseStorage

    try:
        configure_logging({**os.environ, "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")})
        settings = get_settings()
        with DatabaseStorage.from_settings(settings) as storage:
            try:
                pipeline = storage.build_pipeline(args.pipeline)
            except NotFoundError:
                names = [record.name for record in storage.list_pipelines()]
                if args.pipeline in names:
                    raise  # the pipeline exists; something it needs does not
                message = _unknown_pipeline(args.pipeline, names, storage.describe())
                raise NotFoundError(message) from None
            variables = dict(args.var)
            recorder = storage.recorder()
            token = CancelToken()
            outcome: list[RunResult] = []

            def work() -> None:
                outcome.append(
                    run_pipeline(
                        pipeline,
                        variables=variables,
                        listeners=[recorder, ProgressPrinter()],
                        cancel_token=token,
                    )
                )

            worker = threading.Thread(target=work, name=f"th2etl-run-{pipeline.name}")
            worker.start()
            try:
                while worker.is_alive():
                    worker.join(0.2)
            except KeyboardInterrupt:
                print("interrupted: cancelling the run", file=sys.stderr, flush=True)
                token.cancel()
                worker.join()
    except Th2etlError as exc:
        print(f"th2etl: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigurationError) else 1
    if not outcome:
        print("th2etl: error: the run ended without a result (see the log)", file=sys.stderr)
        return 1
    print(f"run id: {outcome[0].run_id}")
    return 0 if outcome[0].succeeded else 1


def _unknown_pipeline(name: str, names: list[str], where: str) -> str:
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


# -- th2etl demo ------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    """Store the example's definitions (SQLite by default), run it recorded, show each bloc."""
    from th2etl.configs.settings import get_settings
    from th2etl.pipelines.example import example_definitions
    from th2etl.storage import DatabaseStorage

    output_dir = Path(args.output_dir).resolve()
    blocs, stages = example_definitions()
    try:
        with DatabaseStorage.from_settings(get_settings()) as storage:
            print(f"storage: {storage.describe()}")
            foreign = _not_the_demos(storage, blocs, stages)
            if foreign:
                print(
                    f"th2etl: error: {storage.describe()} already holds definitions of its own "
                    f"under the demo's names ({foreign}); the demo leaves them as they are. Run "
                    "that pipeline with 'th2etl run example_pipeline', or the demo on a SQLite "
                    "file of its own (unset DATABASE_URL and DATABASE_HOST, then: "
                    "TH2ETL_SQLITE_PATH=th2etl-demo.db th2etl demo)",
                    file=sys.stderr,
                )
                return 1
            for name, (bloc_type, config) in blocs.items():
                try:
                    storage.update_bloc(name, bloc_type=bloc_type, config=config)
                except NotFoundError:
                    storage.create_bloc(name, bloc_type, config=config)
            try:
                storage.update_pipeline("example_pipeline", stages=stages)
            except NotFoundError:
                storage.create_pipeline("example_pipeline", stages=stages)
            result = storage.run_pipeline(
                "example_pipeline", output_dir=output_dir, listeners=[ProgressPrinter()]
            )
            runs = storage.list_runs(pipeline_name="example_pipeline", limit=1000)
    except Th2etlError as exc:
        print(f"th2etl: error: {exc}", file=sys.stderr)
        return 1
    print("\neach bloc:")
    print(result.summary(outcome=False))  # the outcome line was printed live
    print(f"\noutput written to {output_dir / 'example_output.csv'}")
    print(f"run {result.run_id} recorded; example_pipeline has {len(runs)} run(s) in history")
    return 0 if result.succeeded else 1


def _not_the_demos(
    storage: Any, blocs: dict[str, tuple[str, dict[str, object]]], stages: list[list[str]]
) -> str | None:
    """Why a stored definition under one of the demo's names is not the demo's, or None.

    The demo re-stores its own definitions on every run (the example CSV's path changes with
    the install), but it must not overwrite a user's: the Quickstart uses the same names.
    """
    from th2etl.pipelines.example import EXAMPLE_DATA

    try:
        pipeline = storage.get_pipeline("example_pipeline")
    except NotFoundError:
        pass
    else:
        if pipeline.stages != stages:
            return f"pipeline 'example_pipeline' has the stages {pipeline.stages}"
    for name, (bloc_type, config) in blocs.items():
        try:
            record = storage.get_bloc(name)
        except NotFoundError:
            continue
        if record.bloc_type != bloc_type:
            return f"bloc {name!r} is a {record.bloc_type}, the demo's is a {bloc_type}"
        stored = dict(record.config)
        if str(stored.get("file_path", "")).endswith(EXAMPLE_DATA.name):
            stored["file_path"] = config.get("file_path")
        if stored != config:
            return f"bloc {name!r} has the config {record.config}"
    return None


# -- the parser -------------------------------------------------------------------------------


def _add_state_dir(parser: argparse.ArgumentParser, top: bool) -> None:
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        # A sub-command's default must not overwrite a value given before the sub-command.
        default=None if top else argparse.SUPPRESS,
        help="folder of the background service's pid and log files "
        "(default: TH2ETL_HOME or ~/.th2etl)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="th2etl",
        description="th2etl: blocs in parallel stages, a cron scheduler and a REST API. "
        "Without a command, runs the scheduler (and the API with --serve-api).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"th2etl {_version()}")
    parser.add_argument(
        "--serve-api", action="store_true", help="also serve the REST API (and its /docs)"
    )
    # None until given, so that main() can refuse --host/--port without --serve-api.
    parser.add_argument("--host", help=f"address the API listens on (default {DEFAULT_HOST})")
    parser.add_argument(
        "--port", type=_port, help=f"port the API listens on (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow listening on a non-loopback address without TH2ETL_API_KEY (not advised)",
    )
    parser.add_argument(
        "--background",
        action="store_true",
        help="start detached in its own session; print the PID and the log file, and return",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        type=_pair("--env", "SOURCE=prod"),
        metavar="KEY=VALUE",
        help="set an environment variable for the service (repeatable)",
    )
    _add_state_dir(parser, top=True)
    parser.set_defaults(handler=_serve)

    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    status = commands.add_parser(
        "status",
        help="is the background service running? (example: th2etl status)",
        description="Report whether the background service runs; exit 0 if it does, 3 if not.",
    )
    _add_state_dir(status, top=False)
    status.set_defaults(handler=_status)

    stop = commands.add_parser(
        "stop",
        help="stop the background service (example: th2etl stop)",
        description="Send SIGTERM to the background service and wait for it to exit.",
    )
    _add_state_dir(stop, top=False)
    stop.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait after SIGTERM (default 30)"
    )
    stop.add_argument("--force", action="store_true", help="SIGKILL it if it outlives --timeout")
    stop.set_defaults(handler=_stop)

    run = commands.add_parser(
        "run",
        help="run a stored pipeline now (example: th2etl run daily_sales --var day=2026-11-25)",
        description="Run a pipeline stored in the database once, now, showing each bloc's "
        "progress; the run is recorded. Exit status 0 when it succeeds, 1 when it fails.",
    )
    run.add_argument("pipeline", metavar="PIPELINE", help="name of the stored pipeline")
    run.add_argument(
        "--var",
        action="append",
        default=[],
        type=_pair("--var", "day=2026-11-25"),
        metavar="KEY=VALUE",
        help="a run variable, read by configs as ${var:KEY} (repeatable)",
    )
    run.set_defaults(handler=_run)

    demo = commands.add_parser(
        "demo",
        help="run the example pipeline end to end (example: th2etl demo)",
        description="Run the example pipeline: load a CSV, transform it twice, export it.",
    )
    demo.add_argument(
        "--output-dir", default="th2etl_demo_output", help="where the demo writes its CSV"
    )
    demo.set_defaults(handler=_demo)
    return parser


_SERVICE_OPTIONS = ("serve_api", "background", "insecure_no_auth")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is not None:
        given = [f"--{o.replace('_', '-')}" for o in _SERVICE_OPTIONS if getattr(args, o)]
        given += ["--env"] if args.env else []
        if given:
            parser.error(
                f"{', '.join(given)} start the service and cannot be combined with "
                f"'th2etl {args.command}'; run 'th2etl {' '.join(given)}' on its own"
            )
    if not args.serve_api:
        api_only = {f"--{o}": f" {getattr(args, o)}" for o in ("host", "port") if getattr(args, o)}
        api_only.update({"--insecure-no-auth": ""} if args.insecure_no_auth else {})
        if api_only:
            example = "".join(f" {option}{value}" for option, value in api_only.items())
            parser.error(
                f"{', '.join(api_only)} {'apply' if len(api_only) > 1 else 'applies'} only to "
                f"the REST API, which runs with --serve-api: 'th2etl --serve-api{example}'"
            )
    args.host = args.host if args.host is not None else DEFAULT_HOST
    args.port = args.port if args.port is not None else DEFAULT_PORT
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
