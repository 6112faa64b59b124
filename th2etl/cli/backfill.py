"""``th2etl backfill SCHEDULER --from ISO --to ISO``: run a scheduler's past ticks, each for its
own logical time, with progress (done/total, failures). The semantics (which fire times, what
is refused, exactly once, reruns) are stated once, in :mod:`th2etl.scheduler.backfill`.

Exit status: 0 when every run succeeded (or nothing was left to run), 1 when a run failed or the
backfill was refused or interrupted, 2 for a configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING

from th2etl.cli._args import whole_number
from th2etl.exceptions import ConfigurationError, Th2etlError

if TYPE_CHECKING:
    from th2etl.cli._args import Commands
    from th2etl.scheduler.backfill import BackfillReport, BackfillTick

__all__ = ["register"]

EXAMPLES = """\
  th2etl backfill daily_orders --from 2026-03-01 --to 2026-03-31
                                               run a schedule's past ticks (--dry-run lists
                                               them; --rerun-failed, --max-active N)
"""


def register(commands: Commands) -> None:
    backfill = commands.add_parser(
        "backfill",
        help="run a scheduler's past ticks (example: th2etl backfill daily --from 2026-03-01 "
        "--to 2026-03-31)",
        description="Run the ticks of a stored scheduler between --from and --to (inclusive), "
        "each for its own logical time (${run:interval_start}...); ticks that already ran are "
        "skipped, so running it again is safe. A bound without an offset is read in the "
        "trigger's time zone.",
    )
    backfill.add_argument("scheduler", metavar="SCHEDULER", help="name of the stored scheduler")
    backfill.add_argument("--from", dest="start", required=True, metavar="ISO")
    backfill.add_argument("--to", dest="end", required=True, metavar="ISO")
    backfill.add_argument(
        "--rerun-failed",
        action="store_true",
        help="run failed, abandoned and cancelled ticks again, as their next attempt",
    )
    backfill.add_argument(
        "--max-active",
        type=whole_number("runs", 1000, "--max-active 4"),
        default=1,
        metavar="N",
        help="runs at once (default 1)",
    )
    backfill.add_argument("--dry-run", action="store_true", help="list the fire times only")
    backfill.add_argument("--yes", action="store_true", help="accept more than 10,000 fire times")
    backfill.set_defaults(handler=_backfill)


def _backfill(args: argparse.Namespace) -> int:
    from th2etl.cli.service import scheduler_executor
    from th2etl.configs.logging import configure_logging
    from th2etl.configs.settings import get_settings
    from th2etl.logical_time import parse_instant
    from th2etl.scheduler.backfill import Backfill, plan_backfill
    from th2etl.storage import DatabaseStorage

    try:
        configure_logging({**os.environ, "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")})
        settings = get_settings()
        with DatabaseStorage.from_settings(settings) as storage:
            record = storage.get_scheduler(args.scheduler)
            zone = None
            if record.trigger_name is not None:
                zone = storage.get_trigger(record.trigger_name).timezone
            plan = plan_backfill(
                storage,
                args.scheduler,
                parse_instant(args.start, "--from", zone),
                parse_instant(args.end, "--to", zone),
                now=datetime.now().astimezone(),
                rerun_failed=args.rerun_failed,
                yes=args.yes,
            )
            print(plan.summary(), flush=True)
            for note in plan.notes:
                print(f"note: {note}", flush=True)
            if args.dry_run:
                for fire_time in plan.fire_times:
                    print(f"  {fire_time.isoformat()}  {plan.state(fire_time)}")
                return 0
            # The runs execute where the scheduler's do (TH2ETL_EXECUTOR, worker processes
            # by default): isolated and killable like scheduled runs.
            executor = scheduler_executor(settings, storage)
            try:
                backfill = Backfill(storage, plan, max_active=args.max_active, executor=executor)
                try:
                    report = backfill.run(_print_progress)
                except KeyboardInterrupt:
                    print("interrupted: cancelling the runs going", file=sys.stderr, flush=True)
                    report = backfill.report
                    report.cancelled = True
            finally:
                executor.shutdown()
    except Th2etlError as exc:
        print(f"th2etl: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigurationError) else 1
    return _print_end(report)


def _print_progress(report: BackfillReport, tick: BackfillTick) -> None:
    if tick.run_id is None:
        outcome = "taken by another process (it runs there)"
    else:
        assert tick.status is not None
        outcome = f"{tick.status.value} (run {tick.run_id})"
        if tick.error:
            outcome += f": {tick.error}"
    failures = f"  [{len(report.failed)} failed so far]" if report.failed else ""
    print(
        f"[{report.done}/{report.total}] {tick.scheduled_time.isoformat()} {outcome}{failures}",
        flush=True,
    )


def _print_end(report: BackfillReport) -> int:
    failed = len(report.failed)
    line = f"done: {report.done}/{report.total}, {report.succeeded} succeeded, {failed} failed"
    if report.taken:
        line += f", {report.taken} run by another process"
    if report.cancelled:
        line += (
            "; interrupted: run the same command with --rerun-failed to go on (and rerun "
            "the runs it cancelled)"
        )
    elif failed:
        line += "; run again with --rerun-failed to retry them"
    print(line, flush=True)
    return 1 if failed or report.cancelled else 0
