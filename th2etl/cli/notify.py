"""``th2etl notify set|show|remove``: notification rules, per scheduler or the global default;
the semantics are in :mod:`th2etl.notifications`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from th2etl.cli._args import key_value
from th2etl.exceptions import ConfigurationError, Th2etlError

if TYPE_CHECKING:
    from th2etl.cli._args import Commands
    from th2etl.storage import DatabaseStorage

__all__ = ["register"]

EXAMPLES = """\
  th2etl notify set --webhook https://hooks.example.com/etl --email ops@example.com
                                               notify failures of every run (the default rule)
  th2etl notify set --scheduler nightly_sales --on failure,duration --expected-duration 2h
                    --webhook 'https://hooks.example.com/etl?token=${env:HOOK_TOKEN}'
  th2etl notify show                           the rules
"""


def _events(text: str) -> list[str]:
    return [event.strip() for event in text.split(",") if event.strip()]


def _seconds(text: str) -> float:
    from th2etl.retention import parse_age

    try:
        return parse_age(text, "--expected-duration").total_seconds()
    except Th2etlError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(commands: Commands) -> None:
    notify = commands.add_parser(
        "notify",
        help="notification rules (example: th2etl notify set --webhook URL)",
        description="Set, show or remove the rules that send a webhook POST or an email when "
        "a run fails (or succeeds, misses its tick, runs too long). A scheduler's own rule "
        "wins over the default one (no --scheduler).",
    )
    actions = notify.add_subparsers(dest="action", metavar="ACTION", required=True)
    put = actions.add_parser("set", help="store a rule (replacing the one of that scope)")
    put.add_argument("--scheduler", metavar="NAME", help="the scheduler (default: every run)")
    put.add_argument(
        "--on",
        type=_events,
        default=["failure"],
        metavar="EVENTS",
        help="comma-separated: failure (failed or abandoned), success, missed, duration "
        "(default failure)",
    )
    put.add_argument("--webhook", metavar="URL", help="POST the JSON run summary here")
    put.add_argument(
        "--header",
        action="append",
        default=[],
        type=key_value("--header", "Authorization='Bearer ${env:HOOK_TOKEN}'"),
        metavar="NAME=VALUE",
        help="a header of the webhook request (repeatable; secrets as ${env:NAME})",
    )
    put.add_argument(
        "--email", action="append", default=[], metavar="ADDRESS", help="mail to (repeatable)"
    )
    put.add_argument(
        "--expected-duration",
        type=_seconds,
        metavar="AGE",
        help="with --on duration: notify a run still going after this long (e.g. 30m, 2h)",
    )
    put.set_defaults(handler=_set)
    show = actions.add_parser("show", help="print the rules")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_show)
    remove = actions.add_parser("remove", help="remove a rule")
    remove.add_argument("--scheduler", metavar="NAME", help="the scheduler (default: the default)")
    remove.set_defaults(handler=_remove)


def _storage() -> DatabaseStorage:
    from th2etl.configs.logging import configure_logging
    from th2etl.configs.settings import get_settings
    from th2etl.storage import DatabaseStorage

    configure_logging({**os.environ, "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")})
    return DatabaseStorage.from_settings(get_settings())


def _failed(exc: Th2etlError) -> int:
    print(f"th2etl: error: {exc}", file=sys.stderr)
    return 2 if isinstance(exc, ConfigurationError) else 1


def _set(args: argparse.Namespace) -> int:
    from th2etl.notifications import DEFAULT_SCOPE, NotificationRule

    data: dict[str, object] = {"on": args.on}
    if args.webhook:
        data["webhook"] = args.webhook
    if args.header:
        data["headers"] = dict(args.header)
    if args.email:
        data["email"] = args.email
    if args.expected_duration is not None:
        data["expected_duration"] = args.expected_duration
    scope = args.scheduler or DEFAULT_SCOPE
    try:
        rule = NotificationRule.from_dict(data, f"notification rule of {_scope_name(scope)}")
        with _storage() as storage:
            if args.scheduler:
                storage.get_scheduler(args.scheduler)  # NotFoundError naming the schedulers
            storage.set_notification_rule(scope, rule.to_dict())
    except Th2etlError as exc:
        return _failed(exc)
    print(f"notification rule of {_scope_name(scope)} stored: {rule.to_dict()}")
    return 0


def _scope_name(scope: str) -> str:
    return "every run (the default)" if scope == "*" else f"scheduler {scope!r}"


def _show(args: argparse.Namespace) -> int:
    try:
        with _storage() as storage:
            rules = storage.notification_rules()
    except Th2etlError as exc:
        return _failed(exc)
    if args.json:
        import json

        print(json.dumps(rules, indent=2))
    elif not rules:
        print("no notification rules (th2etl notify set --webhook URL adds the default one)")
    for scope, rule in rules.items() if not args.json else ():
        print(f"{_scope_name(scope)}: {rule}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from th2etl.notifications import DEFAULT_SCOPE

    scope = args.scheduler or DEFAULT_SCOPE
    try:
        with _storage() as storage:
            storage.delete_notification_rule(scope)
    except Th2etlError as exc:
        return _failed(exc)
    print(f"notification rule of {_scope_name(scope)} removed")
    return 0
