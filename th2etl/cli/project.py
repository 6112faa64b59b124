"""Definitions as code: ``th2etl apply FILE.toml [--prune] [--dry-run]`` and ``th2etl export
[--pipeline NAME] [--project P] [-o FILE]``; the semantics are in :mod:`th2etl.projects`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from th2etl.exceptions import ConfigurationError, Th2etlError

if TYPE_CHECKING:
    from th2etl.cli._args import Commands
    from th2etl.storage import DatabaseStorage

__all__ = ["register"]

EXAMPLES = """\
  th2etl apply sales.toml --dry-run            the plan of a definitions file, nothing applied
  th2etl apply sales.toml --prune              apply it; remove the project's other definitions
  th2etl export --project sales -o sales.toml  the stored definitions as such a file
"""


def register(commands: Commands) -> None:
    apply = commands.add_parser(
        "apply",
        help="create or update definitions from a TOML file (example: th2etl apply sales.toml)",
        description="Print the plan (what the file adds, changes and, with --prune, removes), "
        "then apply it in one transaction: all of it or nothing. The file's format is in the "
        "README, 'Pipelines as code'.",
    )
    apply.add_argument("file", metavar="FILE.toml", help="the project file")
    apply.add_argument(
        "--prune",
        action="store_true",
        help="also remove the stored definitions of the file's project that it no longer has",
    )
    apply.add_argument("--dry-run", action="store_true", help="print the plan, apply nothing")
    apply.set_defaults(handler=_apply)

    export = commands.add_parser(
        "export",
        help="write stored definitions as a TOML file (example: th2etl export --project sales)",
        description="Write the stored definitions in the format 'th2etl apply' reads: a "
        "pipeline with its blocs, triggers and schedulers (--pipeline), or a project's "
        "definitions and those of no project (--project), or all of them.",
    )
    export.add_argument("--pipeline", metavar="NAME", help="only this pipeline and what it uses")
    export.add_argument("--project", metavar="P", help="the file's project")
    export.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE instead of standard output"
    )
    export.set_defaults(handler=_export)


def _storage() -> DatabaseStorage:
    from th2etl.configs.logging import configure_logging
    from th2etl.configs.settings import get_settings
    from th2etl.storage import DatabaseStorage

    configure_logging({**os.environ, "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")})
    return DatabaseStorage.from_settings(get_settings())


def _failed(exc: Th2etlError) -> int:
    print(f"th2etl: error: {exc}", file=sys.stderr)
    return 2 if isinstance(exc, ConfigurationError) else 1


def _apply(args: argparse.Namespace) -> int:
    from th2etl.projects import ProjectFile, apply_plan, make_plan

    try:
        project_file = ProjectFile.load(args.file)
        with _storage() as storage:
            plan = make_plan(storage, project_file, prune=args.prune)
            print(plan.describe())
            apply_plan(storage, plan, project_file, dry_run=args.dry_run)
    except Th2etlError as exc:
        return _failed(exc)
    if plan.changes:
        print(
            "dry run: nothing was applied" if args.dry_run else f"applied to {storage.describe()}"
        )
    return 0


def _export(args: argparse.Namespace) -> int:
    from th2etl.projects import export_project

    try:
        with _storage() as storage:
            text = export_project(storage, project=args.project, pipeline=args.pipeline)
    except Th2etlError as exc:
        return _failed(exc)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text, end="")
    return 0
