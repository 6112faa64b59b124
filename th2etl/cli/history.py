"""Run history from a terminal: ``th2etl runs``, ``th2etl logs RUN_ID [--follow]`` and
``th2etl cancel RUN_ID``, against the database or a service (``--api URL``), as a table or
``--json``.

``logs --follow`` prints the log as it grows and returns when the run has finished: exit
status 0 when it succeeded, 1 otherwise (Ctrl-C stops following, not the run).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from th2etl.cli._args import whole_number
from th2etl.cli._source import add_source_options, print_json, print_table, with_source
from th2etl.pipelines.result import RunStatus

if TYPE_CHECKING:
    from th2etl.cli._args import Commands
    from th2etl.cli._source import Source
    from th2etl.types import JSON

__all__ = ["register"]

EXAMPLES = """\
  th2etl runs --pipeline daily_sales --status failed --limit 20
                                               the latest runs, as a table (or --json)
  th2etl logs RUN_ID --follow                  a run's log, followed until the run ends
  th2etl cancel RUN_ID                         ask a running run to stop
  th2etl runs --api http://etl-host:8000       the same commands against a running service
"""

FOLLOW_INTERVAL = 0.5
"""Seconds between two reads of a followed run."""


def register(commands: Commands) -> None:
    runs = commands.add_parser(
        "runs",
        help="list recorded runs, newest first (example: th2etl runs --status failed)",
        description="List recorded runs, newest first: id, pipeline, status, start (UTC), "
        "duration, who started it and the error.",
    )
    runs.add_argument("--pipeline", metavar="P", help="only runs of this pipeline")
    runs.add_argument(
        "--status",
        metavar="S",
        choices=[status.value for status in RunStatus],
        help=f"only runs in this status: {', '.join(status.value for status in RunStatus)}",
    )
    runs.add_argument(
        "--limit",
        type=whole_number("runs", 10_000, "--limit 20"),
        default=20,
        metavar="N",
        help="at most N runs (default 20)",
    )
    add_source_options(runs)
    runs.set_defaults(handler=_runs)

    logs = commands.add_parser(
        "logs",
        help="print a run's log (example: th2etl logs RUN_ID --follow)",
        description="Print a run's log. With --follow, keep printing what is added until the "
        "run ends; the exit status is then 0 if it succeeded, 1 if not.",
    )
    logs.add_argument("run_id", metavar="RUN_ID", help="the run's id (see th2etl runs)")
    logs.add_argument(
        "--follow", "-f", action="store_true", help="follow a running run until it ends"
    )
    add_source_options(logs)
    logs.set_defaults(handler=_logs)

    cancel = commands.add_parser(
        "cancel",
        help="ask a running run to stop (example: th2etl cancel RUN_ID)",
        description="Ask a run to stop: blocs not started never start, running blocs are "
        "awaited, and the run ends 'cancelled'. The process that runs it sees the request "
        "within a few seconds. Exit status 1 when the run already ended.",
    )
    cancel.add_argument("run_id", metavar="RUN_ID", help="the run's id (see th2etl runs)")
    add_source_options(cancel)
    cancel.set_defaults(handler=_cancel)


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _duration(run: JSON) -> str:
    seconds = run.get("duration")
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{rest:02d}s"


def _error(run: JSON, width: int = 60) -> str:
    text = (run.get("error") or "").strip().splitlines()
    first = text[0] if text else ""
    return first if len(first) <= width else first[: width - 3] + "..."


@with_source
def _runs(args: argparse.Namespace, source: Source) -> int:
    runs = source.runs(pipeline=args.pipeline, status=args.status, limit=args.limit)
    if args.json:
        print_json(runs)
        return 0
    if not runs:
        filters = " and ".join(
            f"{name} {value!r}"
            for name, value in (("pipeline", args.pipeline), ("status", args.status))
            if value
        )
        print(f"no runs{' with ' + filters if filters else ''} in {source.where}")
        return 0
    rows = [
        [
            run["run_id"],
            run["pipeline_name"],
            run["status"],
            _when(run.get("started_at")),
            _duration(run),
            run.get("scheduler_name") or "manual",
            _error(run),
        ]
        for run in runs
    ]
    print_table(["RUN ID", "PIPELINE", "STATUS", "STARTED", "DURATION", "BY", "ERROR"], rows)
    return 0


@with_source
def _logs(args: argparse.Namespace, source: Source) -> int:
    run = source.run(args.run_id)
    shown = run.get("log") or ""
    if args.json:
        print_json({"run_id": run["run_id"], "status": run["status"], "log": shown})
    else:
        print(shown, end="", flush=True)
    if not args.follow:
        return 0
    try:
        while not RunStatus(run["status"]).finished:
            time.sleep(FOLLOW_INTERVAL)
            run = source.run(args.run_id)
            log = run.get("log") or ""
            added, shown = log[len(shown) :], log
            if args.json and (added or RunStatus(run["status"]).finished):
                print_json({"run_id": run["run_id"], "status": run["status"], "log": added})
            elif added:
                print(added, end="", flush=True)
    except KeyboardInterrupt:
        return 130
    if not args.json:
        print(f"run {run['run_id']} {run['status']}")
    return 0 if run["status"] == RunStatus.SUCCEEDED else 1


@with_source
def _cancel(args: argparse.Namespace, source: Source) -> int:
    run = source.cancel(args.run_id)
    if args.json:
        print_json(run)
    else:
        print(
            f"cancel requested for run {run['run_id']} of pipeline {run['pipeline_name']!r} "
            f"({run['status']}); it stops once its process sees the request "
            f"(follow it with: th2etl logs {run['run_id']} --follow)"
        )
    return 0
