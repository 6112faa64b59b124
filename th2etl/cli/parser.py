"""The ``th2etl`` parser, assembled from the command modules, and :func:`main`."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from th2etl.cli.service import add_service_options, check_service_options

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

COMMAND_MODULES = (
    "th2etl.cli.service",
    "th2etl.cli.run",
    "th2etl.cli.backfill",
    "th2etl.cli.schedules",
    "th2etl.cli.demo",
    "th2etl.cli.history",
    "th2etl.cli.definitions",
    "th2etl.cli.project",
    "th2etl.cli.prune",
    "th2etl.cli.notify",
    "th2etl.cli.legacy",
)
"""Each defines ``EXAMPLES`` and ``register(commands)`` (see :mod:`th2etl.cli`); their
order is the order of ``th2etl --help``."""

FOOTER = """\
  th2etl --version                             print the version

The database comes from DATABASE_URL or DATABASE_HOST/PORT/NAME/USER/PASSWORD (else SQLite at
TH2ETL_SQLITE_PATH or ./th2etl.db); logging from LOG_LEVEL, LOG_LEVELS and LOG_DIR;
TH2ETL_API_KEY makes the API require 'Authorization: Bearer <key>'.
"""


def _version() -> str:
    from th2etl import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    modules = [importlib.import_module(name) for name in COMMAND_MODULES]
    examples = "".join(module.EXAMPLES for module in modules)
    parser = argparse.ArgumentParser(
        prog="th2etl",
        description="th2etl: blocs in parallel stages, a cron scheduler and a REST API. "
        "Without a command, runs the scheduler (and the API with --serve-api).",
        epilog=f"commands and examples:\n{examples}{FOOTER}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"th2etl {_version()}")
    add_service_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for module in modules:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_service_options(parser, args)
    code: int = args.handler(args)
    return code
