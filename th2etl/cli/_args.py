"""Argument types and options shared by several command groups."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    """What ``parser.add_subparsers()`` returns: a command module's ``register`` adds to it."""


def key_value(option: str, example: str) -> Callable[[str], tuple[str, str]]:
    """An argparse ``type`` for ``KEY=VALUE`` options such as ``--var`` and ``--env``."""

    def parse(text: str) -> tuple[str, str]:
        key, equals, value = text.partition("=")
        if not equals:
            raise argparse.ArgumentTypeError(
                f"{text!r} has no '='; write {option} KEY=VALUE, e.g. {option} {example}"
            )
        if not key.strip():
            raise argparse.ArgumentTypeError(
                f"{text!r} has an empty name before '='; write {option} KEY=VALUE, "
                f"e.g. {option} {example}"
            )
        return key.strip(), value

    return parse


def whole_number(what: str, highest: int, example: str) -> Callable[[str], int]:
    """An argparse ``type`` for a count from 1 to ``highest``: ``what`` names it in the
    refusal, ``example`` shows the option in use (``--limit 20``)."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = 0
        if not 1 <= number <= highest:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a number of {what}; use a whole number from 1 to {highest}, "
                f"e.g. {example}"
            )
        return number

    return parse


def add_state_dir(parser: argparse.ArgumentParser, top: bool) -> None:
    """``--state-dir``: the background service's folder, on the top level and sub-commands."""
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        # A sub-command's default must not overwrite a value given before the sub-command.
        default=None if top else argparse.SUPPRESS,
        help="folder of the background service's pid and log files "
        "(default: TH2ETL_HOME or ~/.th2etl)",
    )
