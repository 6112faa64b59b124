"""``th2etl demo``: store the example pipeline's definitions and run it end to end."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from th2etl.cli.run import ProgressPrinter
from th2etl.exceptions import NotFoundError, Th2etlError

if TYPE_CHECKING:
    from th2etl.cli._args import Commands

EXAMPLES = """\
  th2etl demo                                  run the example pipeline end to end
"""


def register(commands: Commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the example pipeline end to end (example: th2etl demo)",
        description="Run the example pipeline: load a CSV, transform it twice, export it.",
    )
    demo.add_argument(
        "--output-dir", default="th2etl_demo_output", help="where the demo writes its CSV"
    )
    demo.set_defaults(handler=_demo)


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
