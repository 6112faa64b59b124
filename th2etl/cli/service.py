"""The service: the scheduler in the foreground (no command), optionally with the REST API
(``--serve-api``), detached (``--background``); ``th2etl status`` and ``th2etl stop`` for the
detached one."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from th2etl.cli._args import add_state_dir, key_value
from th2etl.exceptions import Th2etlError

if TYPE_CHECKING:
    from th2etl.cli._args import Commands
    from th2etl.configs.settings import Settings
    from th2etl.executors import Executor
    from th2etl.notifications import Dispatcher
    from th2etl.retention import DailyRetention
    from th2etl.scheduler import SchedulerManager

EXAMPLES = """\
  th2etl                                       run the scheduler in the foreground
  th2etl --serve-api                           the REST API (docs at /docs, dashboard at /ui)
                                               and the scheduler
  TH2ETL_API_KEY=... th2etl --serve-api --host 0.0.0.0 --port 8080
                                               the same on every address, with an API key
  th2etl --background --env SOURCE=prod        the scheduler, detached; prints its PID and log
  th2etl --serve-api --background              the API service, detached
  th2etl status                                is the background service running?
  th2etl stop                                  stop the background service (SIGTERM)
"""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000

_SERVICE_OPTIONS = ("serve_api", "background", "insecure_no_auth")


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


def add_service_options(parser: argparse.ArgumentParser) -> None:
    """The top-level options: without a command, ``th2etl`` runs the service."""
    parser.add_argument(
        "--serve-api",
        action="store_true",
        help="also serve the REST API (its /docs and the /ui dashboard)",
    )
    # None until given, so that check_service_options() can refuse --host/--port without
    # --serve-api.
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
        type=key_value("--env", "SOURCE=prod"),
        metavar="KEY=VALUE",
        help="set an environment variable for the service (repeatable)",
    )
    add_state_dir(parser, top=True)
    parser.set_defaults(handler=_serve)


def check_service_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse service options given with a command, or API options without ``--serve-api``
    (``parser.error`` exits); fill in the API's default host and port."""
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


def register(commands: Commands) -> None:
    status = commands.add_parser(
        "status",
        help="is the background service running? (example: th2etl status)",
        description="Report whether the background service runs; exit 0 if it does, 3 if not.",
    )
    add_state_dir(status, top=False)
    status.set_defaults(handler=_status)

    stop = commands.add_parser(
        "stop",
        help="stop the background service (example: th2etl stop)",
        description="Send SIGTERM to the background service and wait for it to exit.",
    )
    add_state_dir(stop, top=False)
    stop.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait after SIGTERM (default 30)"
    )
    stop.add_argument("--force", action="store_true", help="SIGKILL it if it outlives --timeout")
    stop.set_defaults(handler=_stop)


# -- the service: scheduler, optionally with the API ------------------------------------------


def _check_service_config(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """Everything that can be refused before the service starts with ``environ`` (also
    before detaching)."""
    from th2etl.configs.logging import parse_logging_config
    from th2etl.configs.settings import get_settings
    from th2etl.notifications import SmtpSettings

    parse_logging_config(environ)
    get_settings(environ)
    SmtpSettings.from_env(environ)
    if args.serve_api:
        from th2etl.api.server import bind_socket, check_bind, service_api_key

        check_bind(args.host, service_api_key(environ), args.insecure_no_auth)
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
    helpers: list[DailyRetention | Dispatcher] = []

    def start_helpers() -> None:
        # Retention and notifications start once the service has reached its database, so an
        # outage at start-up is reported once, by the service's own wait.
        retention = _start_retention()
        if retention is not None:
            helpers.append(retention)
        helpers.append(_start_notifications())

    def api_ready() -> None:
        start_helpers()
        mark_ready()

    try:
        if args.serve_api:
            from th2etl.api.server import serve

            serve(
                host=args.host,
                port=args.port,
                insecure_no_auth=args.insecure_no_auth,
                on_ready=api_ready,
            )
        else:
            _run_scheduler(on_ready=mark_ready, on_started=start_helpers)
    except Th2etlError as exc:
        print(f"th2etl: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for helper in helpers:
            helper.stop()
        remove_own_pid_file()
    return 0


def _start_notifications() -> Dispatcher:
    """Deliver notifications (th2etl notify) from this process, in a thread of their own."""
    from th2etl.configs.settings import get_settings
    from th2etl.notifications import Dispatcher
    from th2etl.storage import DatabaseStorage

    settings = get_settings()
    dispatcher = Dispatcher(lambda: DatabaseStorage.from_settings(settings))
    dispatcher.start()
    return dispatcher


def _start_retention() -> DailyRetention | None:
    """With ``TH2ETL_RUN_RETENTION_DAYS`` set, prune old runs now and once a day."""
    from th2etl.configs.settings import get_settings
    from th2etl.retention import DailyRetention
    from th2etl.storage import DatabaseStorage

    settings = get_settings()
    if settings.run_retention_days is None:
        return None
    retention = DailyRetention(
        lambda: DatabaseStorage.from_settings(settings),
        settings.run_retention_days,
        logs_dir=settings.pipelines_logs_dir,
    )
    retention.start()
    return retention


def scheduler_executor(settings: Settings, storage: Any) -> Executor:
    """Where the scheduler's runs execute -- scheduled, dependency and ``th2etl backfill``
    runs alike: the executor ``TH2ETL_EXECUTOR`` names, worker processes by default."""
    from th2etl.executors import make_executor

    return make_executor(settings.executor or "process", storage, grace=settings.cancel_grace)


def _run_scheduler(
    on_ready: Callable[[], None], on_started: Callable[[], None] = lambda: None
) -> None:
    """The foreground scheduler: ``on_ready`` once the process is up (also while it waits for
    its database), ``on_started`` once the database answered and the scheduler is loaded."""
    import logging
    import signal
    import time
    from types import FrameType

    from th2etl.configs.settings import get_settings
    from th2etl.exceptions import DatabaseUnavailableError
    from th2etl.scheduler import load_scheduler_manager
    from th2etl.storage import DatabaseStorage

    logger = logging.getLogger(__name__)
    stopping: list[int] = []  # the signal that asked to stop, once one did
    managers: list[SchedulerManager] = []

    def stop_early(signum: int, frame: FrameType | None) -> None:
        # Until manager.start() installs its own handlers, a SIGTERM stops the start-up at its
        # next step. Only plain assignments here: raising would break whatever the main thread
        # was doing (an import half done, a lock held) and end the process with a traceback.
        stopping.append(signum)
        for manager in managers:
            manager.stop()  # honoured by a start() that has not begun yet

    def stopped_early() -> bool:
        if stopping:
            logger.info("received %s: stopping", signal.Signals(stopping[0]).name)
        return bool(stopping)

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
                waited = time.monotonic() + delay
                while not stopping and time.monotonic() < waited:
                    time.sleep(0.05)
                if stopped_early():
                    return
                delay = min(delay * 2, 30.0)
                continue
            break
        with storage:
            if stopped_early():
                return
            executor = scheduler_executor(settings, storage)
            manager = load_scheduler_manager(
                storage, executor=executor, stop_grace=settings.drain_grace
            )
            managers.append(manager)
            logger.info("scheduler started on %s (Ctrl-C or SIGTERM stops it)", settings.describe())
            on_ready()
            on_started()
            if stopping:  # asked before the manager was built: it returns at once
                manager.stop()
            # start() stops on SIGINT and SIGTERM, letting running pipelines finish.
            manager.start()
            stopped_early()
            executor.shutdown()
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


# -- th2etl status, th2etl stop ---------------------------------------------------------------


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
