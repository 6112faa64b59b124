"""``th2etl prune --older-than 30d [--dry-run]``: delete old runs, their bloc records, logs and
output folders; the semantics are in :mod:`th2etl.retention`."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from th2etl.exceptions import ConfigurationError, Th2etlError

if TYPE_CHECKING:
    from th2etl.cli._args import Commands

__all__ = ["register"]

EXAMPLES = """\
  th2etl prune --older-than 30d --dry-run      how many runs (and output folders) would go
  th2etl prune --older-than 30d                delete ended runs that started 30+ days ago
"""


def _age(text: str) -> timedelta:
    from th2etl.retention import parse_age

    try:
        return parse_age(text)
    except Th2etlError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(commands: Commands) -> None:
    prune = commands.add_parser(
        "prune",
        help="delete old runs (example: th2etl prune --older-than 30d --dry-run)",
        description="Delete the runs that ended and started before the given age, with their "
        "bloc records, logs and output folders, in small batches. Queued and running runs are "
        "never deleted; which scheduler ticks ran is kept, so they are not run again.",
    )
    prune.add_argument(
        "--older-than",
        type=_age,
        metavar="AGE",
        help="e.g. 30d, 12h, 2w (default: TH2ETL_RUN_RETENTION_DAYS days)",
    )
    prune.add_argument("--dry-run", action="store_true", help="count only, delete nothing")
    prune.set_defaults(handler=_prune)


def _prune(args: argparse.Namespace) -> int:
    from th2etl.configs.logging import configure_logging
    from th2etl.configs.settings import get_settings
    from th2etl.retention import prune
    from th2etl.storage import DatabaseStorage

    try:
        configure_logging({**os.environ, "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")})
        settings = get_settings()
        age = args.older_than
        if age is None:
            if settings.run_retention_days is None:
                raise ConfigurationError(
                    "th2etl prune needs an age: give --older-than (e.g. --older-than 30d) or "
                    "set TH2ETL_RUN_RETENTION_DAYS (e.g. 30)"
                )
            age = timedelta(days=settings.run_retention_days)
        with DatabaseStorage.from_settings(settings) as storage:
            result = prune(
                storage,
                age,
                now=datetime.now(UTC),
                logs_dir=settings.pipelines_logs_dir,
                dry_run=args.dry_run,
            )
    except Th2etlError as exc:
        print(f"th2etl: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigurationError) else 1
    print(result.describe())
    return 0
