"""``th2etl import-legacy``: th2etl 0.0.x's definitions (and runs) into this th2etl; the
semantics are in :mod:`th2etl.legacy`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from th2etl.exceptions import ConfigurationError, Th2etlError

if TYPE_CHECKING:
    from th2etl.cli._args import Commands

__all__ = ["register"]

EXAMPLES = """\
  th2etl import-legacy --dry-run               what th2etl 0.0.x's tables would bring, and why
"""


def register(commands: Commands) -> None:
    command = commands.add_parser(
        "import-legacy",
        help="import th2etl 0.0.8-0.0.15's definitions (example: th2etl import-legacy --dry-run)",
        description="Import the blocs, pipelines, triggers and schedulers of th2etl 0.0.x "
        "(tables etl_*) in one transaction, leaving the old tables as they are; running it "
        "again imports nothing new. Cron expressions the old matcher read differently are "
        "listed with both meanings.",
    )
    command.add_argument("--dry-run", action="store_true", help="report only, import nothing")
    command.add_argument(
        "--with-runs", action="store_true", help="also import etl_pipeline_runs and their logs"
    )
    command.add_argument(
        "--keep-legacy-weekdays",
        action="store_true",
        help="rewrite day-of-week fields to keep the old days (0.0.x counted Monday = 0)",
    )
    command.add_argument(
        "--timezone",
        metavar="ZONE",
        help="IANA zone of the imported triggers (default: the host's, as 0.0.x used)",
    )
    command.set_defaults(handler=_import)


def _import(args: argparse.Namespace) -> int:
    from th2etl.configs.logging import configure_logging
    from th2etl.configs.settings import get_settings
    from th2etl.legacy import import_legacy
    from th2etl.storage import DatabaseStorage

    try:
        configure_logging({**os.environ, "LOG_LEVEL": os.environ.get("LOG_LEVEL", "ERROR")})
        with DatabaseStorage.from_settings(get_settings()) as storage:
            report = import_legacy(
                storage,
                dry_run=args.dry_run,
                with_runs=args.with_runs,
                keep_legacy_weekdays=args.keep_legacy_weekdays,
                timezone=args.timezone,
            )
    except Th2etlError as exc:
        print(f"th2etl: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigurationError) else 1
    print(report.describe())
    if args.dry_run:
        print("dry run: nothing was imported")
    return 0
