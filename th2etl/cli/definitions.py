"""Stored definitions from a terminal: ``th2etl list blocs|pipelines|triggers|schedulers`` and
``th2etl next SCHEDULER [-n 5]``, against the database or a service (``--api URL``), as a
table or ``--json``.

``next`` prints the scheduler's next fire times in its trigger's zone (and in UTC), each with
a DST note where the zone's clocks change (see :mod:`th2etl.scheduler.preview`).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from th2etl.cli._args import whole_number
from th2etl.cli._source import KINDS, add_source_options, print_json, print_table, with_source
from th2etl.exceptions import NotFoundError

if TYPE_CHECKING:
    from th2etl.cli._args import Commands
    from th2etl.cli._source import Source

__all__ = ["register"]

EXAMPLES = """\
  th2etl list pipelines                        the stored pipelines (also blocs, triggers,
                                               schedulers), as a table (or --json)
  th2etl next nightly_sales -n 5               a scheduler's next fire times, with DST notes
"""

_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "blocs": [("NAME", "name"), ("TYPE", "bloc_type"), ("DESCRIPTION", "description")],
    "pipelines": [("NAME", "name"), ("STAGES", "stages"), ("DESCRIPTION", "description")],
    "triggers": [
        ("NAME", "name"),
        ("PIPELINE", "pipeline_name"),
        ("CRON", "cron_expression"),
        ("TIMEZONE", "timezone"),
        ("DESCRIPTION", "description"),
    ],
    "schedulers": [
        ("NAME", "name"),
        ("PIPELINE", "pipeline_name"),
        ("TRIGGER", "trigger_name"),
        ("ENABLED", "enabled"),
        ("DESCRIPTION", "description"),
    ],
}


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.utcoffset() is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date and time with a zone; use ISO 8601, e.g. "
            "--after 2026-03-07T12:00Z or --after 2026-03-07T07:00-05:00"
        )
    return value


def register(commands: Commands) -> None:
    listing = commands.add_parser(
        "list",
        help="list stored definitions (example: th2etl list pipelines)",
        description="List the stored blocs, pipelines, triggers or schedulers, by name.",
    )
    listing.add_argument("kind", choices=KINDS, metavar="|".join(KINDS), help="what to list")
    add_source_options(listing)
    listing.set_defaults(handler=_list)

    following = commands.add_parser(
        "next",
        help="a scheduler's next fire times (example: th2etl next nightly_sales -n 5)",
        description="Print a scheduler's next fire times in its trigger's time zone and in "
        "UTC, with a note where daylight saving time moves or repeats one.",
    )
    following.add_argument("scheduler", metavar="SCHEDULER", help="the scheduler's name")
    following.add_argument(
        "-n",
        type=whole_number("fire times", 1000, "-n 5"),
        default=5,
        metavar="N",
        help="how many fire times (default 5)",
    )
    following.add_argument(
        "--after",
        type=_instant,
        metavar="WHEN",
        help="start after this instant (ISO 8601 with a zone; default now)",
    )
    add_source_options(following)
    following.set_defaults(handler=_next)


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):  # a pipeline's stages
        return " -> ".join(", ".join(stage) for stage in value)
    return "" if value is None else str(value)


@with_source
def _list(args: argparse.Namespace, source: Source) -> int:
    items = source.definitions(args.kind)
    if args.json:
        print_json(items)
        return 0
    if not items:
        print(f"no {args.kind} in {source.where}")
        return 0
    columns = _COLUMNS[args.kind]
    print_table(
        [title for title, _ in columns],
        [[_cell(item.get(key)) for _, key in columns] for item in items],
    )
    return 0


@with_source
def _next(args: argparse.Namespace, source: Source) -> int:
    from th2etl.scheduler.preview import fire_times, utc_offset
    from th2etl.scheduler.triggers import CronTrigger

    scheduler = source.definition("schedulers", args.scheduler)
    if scheduler.get("trigger_name") is None:
        raise NotFoundError(
            f"scheduler {args.scheduler!r} has no fire times of its own: it runs once "
            f"{', '.join(scheduler.get('after_pipelines') or [])} succeeded for a logical time; "
            "see the next fire times of those pipelines' schedulers"
        )
    record = source.definition("triggers", scheduler["trigger_name"])
    trigger = CronTrigger(record["cron_expression"], record["timezone"])
    after = args.after or datetime.now(UTC)
    times = fire_times(trigger, after, args.n)
    if args.json:
        print_json(
            {
                "scheduler": scheduler["name"],
                "pipeline": scheduler["pipeline_name"],
                "trigger": record["name"],
                "cron_expression": record["cron_expression"],
                "timezone": record["timezone"],
                "enabled": scheduler["enabled"],
                "after": after.isoformat(),
                "fire_times": [time.to_dict() for time in times],
            }
        )
        return 0
    disabled = "" if scheduler["enabled"] else " (disabled: it will not fire until enabled)"
    print(
        f"scheduler {scheduler['name']!r} runs pipeline {scheduler['pipeline_name']!r} at "
        f"{record['cron_expression']!r} in {record['timezone']} (trigger {record['name']!r})"
        f"{disabled}"
    )
    for time in times:
        local = time.at.astimezone(trigger.timezone)
        line = (
            f"  {local:%Y-%m-%d %H:%M %Z} ({utc_offset(local.utcoffset())})   "
            f"{time.at.astimezone(UTC):%Y-%m-%d %H:%M}Z"
        )
        print(f"{line}   {time.note}" if time.note else line)
    return 0
