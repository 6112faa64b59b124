"""The ``th2etl`` command line, one module per command group.

``th2etl.runner`` is the entry point the seed names (``th2etl``, ``python -m th2etl.runner``);
it calls :func:`main` here. :mod:`th2etl.cli.parser` builds the parser from the modules listed
in its ``COMMAND_MODULES``; each such module defines

* ``EXAMPLES``: lines for ``th2etl --help``'s list of commands and examples, and
* ``register(commands)``: adds its sub-commands to the sub-parsers action, each with
  ``set_defaults(handler=...)``; a handler takes the parsed arguments and returns the exit status.

A new command group is a new module plus one line in ``COMMAND_MODULES``. The top-level
options (no command: the scheduler, ``--serve-api``, ``--background``) belong to
:mod:`th2etl.cli.service`.
"""

from __future__ import annotations

from th2etl.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
