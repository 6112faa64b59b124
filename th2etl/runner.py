"""The ``th2etl`` command (also ``python -m th2etl.runner``), the entry point the seed names.

The commands live in :mod:`th2etl.cli`, one module per command group; ``th2etl --help`` lists
them all with examples.
"""

from __future__ import annotations

import sys

from th2etl.cli import build_parser, main
from th2etl.cli.run import ProgressPrinter

__all__ = ["ProgressPrinter", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
