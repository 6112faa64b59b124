"""``th2etl schedule NAME [options]`` and ``th2etl schedule-defaults [options]``: read or change
a stored scheduler's options and the defaults of schedulers that set none, on the configured
database. What each option means, its range and which value wins: :mod:`th2etl.scheduler.options`.
Without an option the command shows the current values (``--json`` for the stored record)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from th2etl.cli._args import key_value
from th2etl.exceptions import ConfigurationError, Th2etlError

if TYPE_CHECKING:
    from th2etl.cli._args import Commands

__all__ = ["register"]

EXAMPLES = """\
  th2etl schedule orders_nightly --missed all --timeout 3600 --var region=north
                                               a scheduler's options (none given: show them)
  th2etl schedule-defaults --overlap allow     options of the schedulers that set none
"""

_DEFAULTS = ("missed", "overlap", "max_active_runs", "timeout")


def _add_defaults(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--missed", metavar="POLICY", help="skip, latest or all")
    parser.add_argument("--overlap", metavar="POLICY", help="skip or allow")
    parser.add_argument(
        "--max-active-runs", type=int, metavar="N", help="queued and running runs at once"
    )
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="a run's time limit")
    parser.add_argument("--json", action="store_true", help="print the stored values as JSON")


def register(commands: Commands) -> None:
    schedule = commands.add_parser(
        "schedule",
        help="show or change a stored scheduler's options",
        description="Change the options given (the others keep their value) and print the "
        "scheduler's options; running schedulers use them from their next tick.",
    )
    schedule.add_argument("scheduler", metavar="SCHEDULER")
    _add_defaults(schedule)
    schedule.add_argument("--start-date", metavar="ISO", help="no tick before it")
    schedule.add_argument("--end-date", metavar="ISO", help="no tick after it")
    schedule.add_argument(
        "--var",
        action="append",
        default=[],
        type=key_value("--var", "region=north"),
        metavar="KEY=VALUE",
        help="a run variable (repeatable; replaces the stored variables)",
    )
    state = schedule.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="enabled", action="store_const", const=True)
    state.add_argument("--disable", dest="enabled", action="store_const", const=False)
    schedule.add_argument(
        "--reset", action="append", default=[], metavar="OPTION", help="unset an option"
    )
    schedule.set_defaults(handler=_schedule)
    defaults = commands.add_parser(
        "schedule-defaults",
        help="show or replace the options of schedulers that set none",
        description="With options: replace the stored defaults (an option left out is unset).",
    )
    _add_defaults(defaults)
    defaults.set_defaults(handler=_schedule_defaults)


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _schedule(args: argparse.Namespace) -> int:
    from th2etl.logical_time import parse_instant

    def change(storage: Any) -> dict[str, Any]:
        changes = _given(args, (*_DEFAULTS, "enabled"))
        for name in ("start_date", "end_date"):
            value = getattr(args, name)
            if value is not None:
                changes[name] = parse_instant(value, f"--{name.replace('_', '-')}")
        if args.var:
            changes["variables"] = dict(args.var)
        if changes or args.reset:
            record = storage.update_scheduler(args.scheduler, reset=args.reset, **changes)
        else:
            record = storage.get_scheduler(args.scheduler)
        shown: dict[str, Any] = record.to_dict()
        return shown

    return _with_storage(change, args.json)


def _schedule_defaults(args: argparse.Namespace) -> int:
    def change(storage: Any) -> dict[str, Any]:
        given = _given(args, _DEFAULTS)
        defaults = storage.set_schedule_defaults(**given) if given else None
        shown: dict[str, Any] = (defaults or storage.get_schedule_defaults()).to_dict()
        return shown

    return _with_storage(change, args.json)


def _with_storage(action: Any, as_json: bool) -> int:
    from th2etl.configs.settings import get_settings
    from th2etl.storage import DatabaseStorage

    try:
        with DatabaseStorage.from_settings(get_settings()) as storage:
            shown = action(storage)
    except Th2etlError as exc:
        print(f"th2etl: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigurationError) else 1
    if as_json:
        print(json.dumps(shown, indent=2, ensure_ascii=False, default=str))
        return 0
    keys = ("enabled", "trigger_name", "after_pipelines", "variables", "start_date", "end_date")
    for key in (*keys, *_DEFAULTS):
        if key in shown:
            value = shown[key]
            print(f"{key:<16} {'(unset)' if value is None else value}")
    return 0
