"""The ``th2etl`` command (also ``python -m th2etl.runner``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from th2etl.pipelines import build_example_pipeline

    output_dir = Path(args.output_dir).resolve()
    result = build_example_pipeline().run(output_dir=output_dir)
    print(result.summary())
    print(f"output written to {output_dir}")
    return 0 if result.succeeded else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="th2etl",
        description="th2etl: blocs in parallel stages, a cron scheduler and a REST API.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    code: int = handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
